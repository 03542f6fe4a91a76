"""`make run`: the whole stack on one machine, one process per part.

Starts the embedded database (SecantusDB, unless `MONGODB_URI` points elsewhere),
then ingest, media and admin, then the gateway; waits until each is ready; prints
where everything is and how to sign in. A child that dies is reported with the end
of its output and restarted (a few times, then the stack stops). Ctrl-C or SIGTERM
stops everything, gateway first and database last.
"""

from __future__ import annotations

import signal
import sys
import time

from services.common.runtime.settings import (
    SERVICE_NAMES,
    ConfigError,
)
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
    try:
        print("Starting EmoGo ...", flush=True)
        supervisor.start_all()
        print(banner(config), flush=True)
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
        supervisor.stop_all()
        print("Stopped.", flush=True)


def main() -> None:
    try:
        config = StackConfig.from_env()
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
