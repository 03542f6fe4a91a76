"""Background work done every few seconds in a service's process (folding rollups,
daily notices, removing abandoned uploads), started and stopped by its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pymongo.errors import PyMongoError


class BackgroundTask:
    """A coroutine of the process (`_run`) started with the app and cancelled when it
    stops."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Periodic(BackgroundTask):
    """Runs `step` every `seconds` until stopped. A step that fails is logged and the
    next one runs on time: each step does whatever is still to do, so a database
    error (a warning: it is usually passing) costs one interval, not the work."""

    def __init__(
        self,
        what: str,
        step: Callable[[], Awaitable[None]],
        seconds: float,
        logger: logging.Logger,
    ) -> None:
        self.what = what
        self.step = step
        self.seconds = seconds
        self.logger = logger

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except PyMongoError as problem:
                self.logger.warning(f"{self.what} failed", extra={"error": type(problem).__name__})
            except Exception:
                self.logger.exception(f"{self.what} failed")
            await asyncio.sleep(self.seconds)
