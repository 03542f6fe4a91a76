"""`make run`: the whole stack on one machine, one process per part
(`python -m services.launcher`). See __main__ for what it does, config for what it
runs with, database for the embedded database and supervisor for the processes."""
