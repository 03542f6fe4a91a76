"""The gateway: the one public port. Routes to the services and renders the export page."""
