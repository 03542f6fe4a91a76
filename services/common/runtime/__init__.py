"""What a running process needs: settings from the environment, the database client,
JSON logs, the HTTP server and its limits, worker processes, background work and the
garbage collector's settings."""
