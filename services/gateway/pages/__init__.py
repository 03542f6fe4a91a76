"""The gateway's HTML pages: home, the docs index, the export page (built without HTTP
by export_page.build_export_page), maps, charts, the cockpit, and their headers."""
