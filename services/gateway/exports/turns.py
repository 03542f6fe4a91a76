"""Turns for the exports that cost a gateway process memory: ZIP and Parquet.

Each holds buffers while it streams (a Parquet row group, the ZIP's spooled files and
its compressor), so ten at once once took a gateway from 95 to over 400 MiB, and it
stayed there. A process runs at most `at_once` of them; another waits for a turn up to
`wait_seconds`, then gets 503 with Retry-After, before any byte is sent. A turn is held
until the download ends, however it ends (finished, failed, or the client gone).
Measured in bench/export.py --concurrent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.common.web.errors import ServiceUnavailable

RETRY_SECONDS = 15


class ExportTurns:
    def __init__(self, at_once: int, wait_seconds: float) -> None:
        self.at_once = at_once
        self.wait_seconds = wait_seconds
        self._turns = asyncio.Semaphore(at_once)

    async def take(self) -> None:
        if not self._turns.locked():  # free now: taken without waiting
            await self._turns.acquire()
            return
        try:
            await asyncio.wait_for(self._turns.acquire(), timeout=self.wait_seconds)
        except TimeoutError:
            raise ServiceUnavailable(
                f"{self.at_once} large exports are being made; ask again shortly",
                headers={"Retry-After": str(RETRY_SECONDS)},
            ) from None

    def give_back(self) -> None:
        self._turns.release()

    def holding(self, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`pieces`, for a download whose turn was taken: given back when it ends."""
        return _Held(self, pieces)


class _Held:
    """The pieces of a download holding a turn. Not an async generator: one that is
    never started (the client left before the first piece) would never run its
    `finally`; this gives the turn back when it ends, fails, is closed, or is dropped."""

    def __init__(self, turns: ExportTurns, pieces: AsyncIterator[bytes]) -> None:
        self._turns = turns
        self._pieces = pieces
        self._held = True

    def __aiter__(self) -> _Held:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._pieces)
        except BaseException:  # the end (StopAsyncIteration), a failure, a cancellation
            self._give_back()
            raise

    async def aclose(self) -> None:
        self._give_back()
        close = getattr(self._pieces, "aclose", None)
        if close is not None:
            await close()

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._turns.give_back()

    def __del__(self) -> None:
        self._give_back()
