"""`make run`: the whole stack on one machine, one process per part.

Starts the embedded database (SecantusDB, unless `MONGODB_URI` points elsewhere),
then ingest, media and admin, then the gateway; waits until each is ready; prints
where everything is and how to sign in. A child that dies is reported with the end
of its output and restarted (a few times, then the stack stops). Ctrl-C or SIGTERM
stops everything, gateway first and database last.

`python -m services.launcher backup [--to FOLDER]` writes a backup of the embedded
database, the stack running or not; `restore BACKUP` puts one in place of a stopped
stack's database (services.launcher.backups).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from services.common.runtime.settings import (
    SERVICE_NAMES,
    ConfigError,
)
from services.launcher.backups import BackupSchedule, restore_backup, take_backup
from services.launcher.config import StackConfig, StackError
from services.launcher.supervisor import (
    Supervisor,
    ensure_ports_free,
    stack_specs,
)


def banner(config: StackConfig) -> str:
    gateway = config.url("gateway")
    tokens = config.credentials.by_role()
    database = (
        "external (MONGODB_URI)"
        if config.external_mongodb_uri
        else f"{config.mongodb_uri} (embedded SecantusDB, files in {config.data_dir / 'db'})"
    )
    services = ", ".join(f"{name} {config.url(name)}" for name in SERVICE_NAMES)
    return f"""
EmoGo is running.
  Export page   {gateway}/export
  API docs      {gateway}/docs
  Health        {gateway}/health
  Services      {services}
  Database      {database}
  Logs          {config.log_dir}

Credentials (kept in {config.credentials_file}, readable only by you):
  admin   {tokens["admin"]}
  viewer  {tokens["viewer"]}
  device  {tokens["device"]}
Use them as `Authorization: Bearer <token>`, or in a browser sign in with the role
as user name and the token as password. For example:
  curl -H "Authorization: Bearer {tokens["viewer"]}" {gateway}/api/v1/whoami

Press Ctrl-C to stop.
"""


class _Stop(Exception):
    pass


def run(config: StackConfig) -> int:
    ensure_ports_free(config)
    supervisor = Supervisor(stack_specs(config))

    def request_stop(signum: int, _frame: object) -> None:
        # Further signals must not interrupt the orderly stop (children would be orphaned);
        # stopping is bounded anyway: each child gets STOP_TIMEOUT_SECONDS, then SIGKILL.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    schedule = None
    if config.backup_every_seconds and not config.external_mongodb_uri:
        schedule = BackupSchedule(
            config, config.backup_dir, config.backup_every_seconds, config.backup_keep
        )
    try:
        print("Starting EmoGo ...", flush=True)
        supervisor.start_all()
        print(banner(config), flush=True)
        if schedule is not None:
            schedule.start()
        while True:
            for name, code in supervisor.died():
                supervisor.restart_after_death(name, code)
            time.sleep(0.5)
    except _Stop:
        print("\nStopping EmoGo ...", flush=True)
        return 0
    except StackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if schedule is not None:
            schedule.stop()
        supervisor.stop_all()
        print("Stopped.", flush=True)


def backup(config: StackConfig, into: Path | None) -> int:
    made = take_backup(config, into or config.backup_dir)
    print(f"Backup written: {made}")
    print("Copy it to another disk or machine: a backup beside the data it saves is lost with it.")
    return 0


def restore(config: StackConfig, source: Path) -> int:
    restored = restore_backup(config, source)
    print(
        f"Restored the database as it was at {restored.created_at} "
        f"({restored.collections} collections)."
    )
    if restored.replaced is not None:
        print(
            f"The database it replaced is kept in {restored.replaced}; delete it once "
            "the restored stack is checked."
        )
    print(
        "Deletions made after the backup are done again when the stack next starts "
        "(from the deletion receipts kept outside the database). Start it: make run"
    )
    return 0


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.launcher", description="Runs, backs up and restores EmoGo."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="start the whole stack (the default)")
    taking = commands.add_parser("backup", help="write a backup of the embedded database")
    taking.add_argument("--to", type=Path, help="folder to write it in (EMOGO_BACKUP_DIR)")
    restoring = commands.add_parser("restore", help="restore a stopped stack from a backup")
    restoring.add_argument("backup", type=Path, help="the backup's folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    try:
        config = StackConfig.from_env()
        if arguments.command == "backup":
            code = backup(config, arguments.to)
        elif arguments.command == "restore":
            code = restore(config, arguments.backup)
        else:
            code = run(config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        code = 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
