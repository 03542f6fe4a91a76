"""`make run`: the whole stack on one machine, one process per part.

Starts the embedded database (SecantusDB, unless `MONGODB_URI` points elsewhere),
then ingest, media and admin, then the gateway; waits until each is ready; prints
where everything is and how to sign in. A child that dies is reported with the end
of its output and restarted (a few times, then the stack stops). Ctrl-C or SIGTERM
stops everything, gateway first and database last.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from services.common.runtime.settings import (
    DEFAULT_PORTS,
    SERVICE_NAMES,
    SERVICE_TOKEN_VARIABLE,
    ConfigError,
    Credentials,
    Environment,
    read_credentials,
)

ROLES = ("admin", "viewer", "device")
DEFAULT_DB_PORT = 27018
CREDENTIALS_FILE = "credentials.env"
SECRET_KEY_VARIABLE = "EMOGO_SECRET_KEY"  # noqa: S105 - the variable's name
# A service builds missing indexes before it is ready: on a large database (a new
# index after an upgrade) that takes minutes, so the wait is long and reported.
READY_TIMEOUT_SECONDS = 1800.0
STILL_STARTING_EVERY_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
# A child that dies more often than this within the window takes the stack down.
MAX_RESTARTS = 3
RESTART_WINDOW_SECONDS = 60.0


class StackError(Exception):
    """The stack cannot start or keep running; the message says why and what to do."""


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    host: str
    ports: dict[str, int]  # gateway, ingest, media, admin
    db_port: int
    external_mongodb_uri: str | None
    credentials: Credentials
    credentials_file: Path
    # Encrypts the admin service's provider keys (EMOGO_SECRET_KEY).
    secret_key: str
    # The gateway's own credential towards the services (EMOGO_SERVICE_TOKEN).
    service_token: str
    passthrough_env: dict[str, str] = field(default_factory=dict)

    @property
    def mongodb_uri(self) -> str:
        return self.external_mongodb_uri or local_mongodb_uri(self.db_port)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def url(self, name: str) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.ports[name]}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        environ = dict(os.environ if environ is None else environ)
        env = Environment(environ)
        data_dir = Path(env.text("EMOGO_DATA_DIR", "./data")).resolve()
        ports = {
            name: env.port(f"EMOGO_{name.upper()}_PORT", default)
            for name, default in DEFAULT_PORTS.items()
        }
        credentials, secrets_of, credentials_file = load_or_create_credentials(data_dir, environ)
        return cls(
            data_dir=data_dir,
            host=env.text("EMOGO_HOST", "127.0.0.1"),
            ports=ports,
            db_port=env.port("EMOGO_DB_PORT", DEFAULT_DB_PORT),
            external_mongodb_uri=env.raw("MONGODB_URI"),
            credentials=credentials,
            credentials_file=credentials_file,
            secret_key=secrets_of[SECRET_KEY_VARIABLE],
            service_token=secrets_of[SERVICE_TOKEN_VARIABLE],
            passthrough_env=environ,
        )


def load_or_create_credentials(
    data_dir: Path, environ: Mapping[str, str]
) -> tuple[Credentials, dict[str, str], Path]:
    """The role tokens, and the secret key and service token by their variables. Values
    in the environment win; the rest come from the data folder's credentials file,
    created on first run, readable only by its owner."""
    path = data_dir / CREDENTIALS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                stored[key.strip()] = value.strip()
    generated = [
        *(f"EMOGO_{role.upper()}_TOKEN" for role in ROLES),
        SECRET_KEY_VARIABLE,
        SERVICE_TOKEN_VARIABLE,
    ]
    missing = [name for name in generated if not environ.get(name) and not stored.get(name)]
    if missing:
        for name in missing:
            stored[name] = secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        text = "# EmoGo role tokens and secret key, generated on first run. Keep private.\n"
        text += "".join(f"{k}={v}\n" for k, v in sorted(stored.items()))
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        temporary.replace(path)
    merged = {**stored, **{k: v for k, v in environ.items() if k in generated and v}}
    internal = {name: merged[name] for name in (SECRET_KEY_VARIABLE, SERVICE_TOKEN_VARIABLE)}
    return read_credentials(Environment(merged)), internal, path


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    is_ready: Callable[[], bool]
    console_log: Path


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def mongo_ready(uri: str) -> Callable[[], bool]:
    def check() -> bool:
        client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    return check


def local_mongodb_uri(port: int) -> str:
    """The URI of a database server on this machine, such as the embedded one.

    Without retryable writes: the embedded server is one node on this machine, so the
    driver's single retry has no failover to bridge, and the server's bookkeeping of
    retryable writes made each insert cost it more and more (0.74 ms of its CPU at
    first, 10-11 ms once 12,000 had been made; 0.55 ms throughout without it:
    bench/embedded_writes.py). A write whose answer is lost fails instead of being sent
    again; it was never confirmed, and phones resend it with its `client_id`. A
    `MONGODB_URI` keeps the driver's defaults."""
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"


def secantus_argv(port: int, storage: Path | str, log_level: str = "WARNING") -> list[str]:
    """The command that runs the embedded database on 127.0.0.1:`port` with its files
    in `storage` (":memory:" for a throw-away one)."""
    return [
        secantus_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage),
        "--log-level",
        log_level,
        # A commit is on disk before the write is acknowledged: without this, a
        # crash of the database loses writes its clients were told are stored.
        "--sync-on-commit",
    ]


def secantus_command() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise StackError(
            "secantusd-py (the embedded database) is not installed. Run `make run`, which "
            "installs it, or set MONGODB_URI to a MongoDB server."
        )
    return found


def stack_specs(config: StackConfig) -> list[ProcessSpec]:
    """The processes of the stack, in start order."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        # Each process's stdout goes to its console file, beside the log file that
        # already holds every line: only warnings and errors are written twice.
        "EMOGO_CONSOLE_LOG_LEVEL": "WARNING",
        **config.passthrough_env,
        "PYTHONUNBUFFERED": "1",
        "EMOGO_DATA_DIR": str(config.data_dir),
        "EMOGO_LOG_DIR": str(config.log_dir),
        "EMOGO_HOST": config.host,
        "MONGODB_URI": config.mongodb_uri,
        **{f"EMOGO_{name.upper()}_PORT": str(port) for name, port in config.ports.items()},
        **{
            f"EMOGO_{role.upper()}_TOKEN": token
            for role, token in config.credentials.by_role().items()
        },
        SECRET_KEY_VARIABLE: config.secret_key,
        SERVICE_TOKEN_VARIABLE: config.service_token,
    }
    specs: list[ProcessSpec] = []
    if config.external_mongodb_uri is None:
        storage = config.data_dir / "db"
        storage.mkdir(parents=True, exist_ok=True)
        specs.append(
            ProcessSpec(
                name="database",
                argv=secantus_argv(config.db_port, storage),
                env=env,
                is_ready=mongo_ready(config.mongodb_uri),
                console_log=config.log_dir / "database.console.log",
            )
        )
    for name in (*SERVICE_NAMES, "gateway"):
        specs.append(
            ProcessSpec(
                name=name,
                argv=[sys.executable, "-m", f"services.{name}"],
                env=env,
                is_ready=http_ready(config.url(name) + "/ready"),
                console_log=config.log_dir / f"{name}.console.log",
            )
        )
    return specs


def ensure_ports_free(config: StackConfig) -> None:
    wanted = [
        (f"EMOGO_{name.upper()}_PORT", name, port, config.host)
        for name, port in config.ports.items()
    ]
    if config.external_mongodb_uri is None:
        wanted.append(("EMOGO_DB_PORT", "database", config.db_port, "127.0.0.1"))
    for variable, name, port, host in wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise StackError(
                    f"Port {port} on {host} (for the {name}) is already in use. Stop what uses "
                    f"it (an earlier `make run`?) or choose another port with {variable}."
                ) from None


def tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


class Supervisor:
    """Starts, watches and stops the stack's processes."""

    def __init__(self, specs: list[ProcessSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in self.specs}

    def start(self, name: str) -> None:
        spec = self.specs[name]
        spec.console_log.parent.mkdir(parents=True, exist_ok=True)
        with spec.console_log.open("ab") as console:
            # Own session: a terminal's Ctrl-C reaches only the launcher, which
            # then stops the children in order.
            self.processes[name] = subprocess.Popen(
                spec.argv,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        spec, process = self.specs[name], self.processes[name]
        started = time.monotonic()
        deadline = started + timeout
        next_note = started + STILL_STARTING_EVERY_SECONDS
        while time.monotonic() < deadline:
            if time.monotonic() > next_note:
                waited = time.monotonic() - started
                print(
                    f"{name} is still starting after {waited:.0f} s (building indexes on a "
                    f"large database can take minutes; see {spec.console_log})",
                    file=sys.stderr,
                    flush=True,
                )
                next_note += STILL_STARTING_EVERY_SECONDS
            if process.poll() is not None:
                raise StackError(
                    f"The {name} exited with code {process.returncode} while starting. "
                    f"End of {spec.console_log}:\n{tail(spec.console_log)}"
                )
            if spec.is_ready():
                return
            time.sleep(0.2)
        raise StackError(
            f"The {name} was not ready after {timeout:.0f} s. End of {spec.console_log}:\n"
            f"{tail(spec.console_log)}"
        )

    def start_all(self) -> None:
        for name in self.specs:
            self.start(name)
            # Services can start side by side; each must be up before the gateway.
            if name in ("database", "gateway"):
                self.wait_ready(name)
            if name == SERVICE_NAMES[-1]:
                for service in SERVICE_NAMES:
                    self.wait_ready(service)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.specs)):
            self.stop(name)

    def died(self) -> list[tuple[str, int]]:
        return [
            (name, process.returncode)
            for name, process in self.processes.items()
            if process.poll() is not None
        ]

    def restart_after_death(self, name: str, code: int) -> None:
        """Report loudly and restart; give up when it keeps dying."""
        spec = self.specs[name]
        banner = "!" * 72
        print(
            f"\n{banner}\n{name} DIED (exit code {code}). End of {spec.console_log}:\n"
            f"{tail(spec.console_log)}{banner}",
            file=sys.stderr,
            flush=True,
        )
        now = time.monotonic()
        recent = [t for t in self.restarts[name] if now - t < RESTART_WINDOW_SECONDS]
        if len(recent) >= MAX_RESTARTS:
            raise StackError(
                f"{name} died {len(recent) + 1} times within a minute; stopping the stack."
            )
        self.restarts[name] = [*recent, now]
        self.processes.pop(name, None)
        print(f"restarting {name} ...", file=sys.stderr, flush=True)
        self.start(name)
        self.wait_ready(name)
        print(f"{name} is back.", file=sys.stderr, flush=True)


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
