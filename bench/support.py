"""What the benchmarks share: a throw-away stack started exactly as `make run` starts it."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.runtime.settings import Credentials
from services.launcher.config import StackConfig, local_mongodb_uri
from services.launcher.database import mongo_ready, secantus_argv
from services.launcher.supervisor import Supervisor, stack_specs
from tests.support import free_port, http_ok, stack_config, wait_until


@contextmanager
def throwaway_stack(
    mongodb_uri: str | None = None, **extra_env: str
) -> Iterator[tuple[StackConfig, Supervisor]]:
    """The services and the gateway in a temporary folder on free ports, on
    `mongodb_uri`, or else on an embedded SecantusDB with its files there (as `make run`)."""
    workdir = Path(tempfile.mkdtemp(prefix="emogo-bench-"))
    tokens = {role: secrets.token_urlsafe(24) for role in ("admin", "viewer", "device")}
    credentials = Credentials(**tokens)
    config = stack_config(
        workdir, credentials, mongodb_uri, {"EMOGO_LOG_LEVEL": "WARNING", **extra_env}
    )
    supervisor = Supervisor(stack_specs(config))
    try:
        supervisor.start_all()
        yield config, supervisor
    finally:
        supervisor.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def embedded_database(durable: bool = True) -> Iterator[tuple[str, int]]:
    """A throw-away embedded server started as `make run` starts it (syncing each commit
    to disk unless `durable` is false): its URI and process id."""
    folder = Path(tempfile.mkdtemp(prefix="emogo-bench-db-"))
    port = free_port()
    argv = secantus_argv(port, folder)
    if not durable:
        argv.remove("--sync-on-commit")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    uri = local_mongodb_uri(port)
    try:
        wait_until(mongo_ready(uri), 30, "the embedded database")
        yield uri, process.pid
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def bearer(config: StackConfig, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.credentials.by_role()[role]}"}


async def rate(step: Callable[[], Awaitable[int]], seconds: float, concurrency: int) -> float:
    """Events per second while `concurrency` workers repeat `step` (which returns events)."""
    events = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal events
        while time.perf_counter() < deadline:
            # Await first: `events += await step()` would read `events` before the
            # await and lose the other workers' increments.
            done = await step()
            events += done

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return events / (time.perf_counter() - began)


@contextmanager
def started_pair(
    config: StackConfig, tree: Path, db_name: str
) -> Iterator[tuple[dict[str, int], str]]:
    """An ingest and a gateway of the checkout in `tree` beside the stack, on its
    database server (in database `db_name`) and with its credentials: (their pids, the
    gateway's URL). What CPU benches compare is started this way, alike: as the
    stack's own processes, the same code measured about 5 % dearer than when started
    so (bench/cpu_versus.py against its own revision)."""
    gateway = next(spec for spec in stack_specs(config) if spec.name == "gateway")
    ports = {name: free_port() for name in ("ingest", "gateway")}
    env = {
        **os.environ,
        **gateway.env,
        "DB_NAME": db_name,
        "EMOGO_LOG_DIR": str(config.log_dir / db_name),
        **{f"EMOGO_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("ingest", "gateway"):
            started[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=tree,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            ready = f"http://127.0.0.1:{ports[name]}/ready"
            wait_until(http_ok(ready), 60, f"the {name} of {tree}")
        yield (
            {name: process.pid for name, process in started.items()},
            (f"http://127.0.0.1:{ports['gateway']}"),
        )
    finally:
        for process in started.values():
            process.terminate()
            process.wait(10)
