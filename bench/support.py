"""What the benchmarks share: a throw-away stack started exactly as `make run` starts it."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.settings import Credentials
from services.launcher import (
    StackConfig,
    Supervisor,
    stack_specs,
)
from tests.support import stack_config


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
