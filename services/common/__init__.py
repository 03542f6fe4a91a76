"""What every EmoGo service shares, in three layers. It never imports a service.

- `web`: Litestar glue that knows no domain: the app builder, errors, validation,
  OpenAPI, pagination, health.
- `runtime`: the process: settings, the database client, logs, the HTTP server,
  workers, background work.
- `research`: the research domain every service checks: studies, issued tokens,
  credentials and roles, privacy, pseudonyms, the audit chain, local days, values and
  the codebook. Its data is written by the admin service and read by all.

`web` and `runtime` never import `research` (the import contract in pyproject.toml).
"""
