"""The processes of the stack: what each runs, started in order and awaited until
ready, a child that dies reported with the end of its output and restarted (a few
times, then the stack stops), and all stopped in reverse order."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.common.runtime.settings import (
    SERVICE_NAMES,
    SERVICE_TOKEN_VARIABLE,
)
from services.launcher.config import SECRET_KEY_VARIABLE, StackConfig, StackError
from services.launcher.database import mongo_ready, secantus_argv

# A service builds missing indexes before it is ready: on a large database (a new
# index after an upgrade) that takes minutes, so the wait is long and reported.
READY_TIMEOUT_SECONDS = 1800.0


STILL_STARTING_EVERY_SECONDS = 15.0


STOP_TIMEOUT_SECONDS = 10.0


# A child that dies more often than this within the window takes the stack down.
MAX_RESTARTS = 3


RESTART_WINDOW_SECONDS = 60.0


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
