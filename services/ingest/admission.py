"""Large batches take turns at the database.

A batch of 1,000 GPS fixes takes the embedded database about 0.35 s; ten sent at once
took up to 3.6 s each, and thirty at once (a class's phones flushing two days of
queued fixes after a weekend) each passed the 5 s deadline. Every one answered 503,
the database went on with the inserts its clients had given up on while the phones
sent them again, its connections piled up to its cap, and for minutes every write of
every class failed (bench/soak.py --storm, 2026-12-07). A batch's own cost cannot be
lowered much; how many the database works on at once can.

So a batch of more than SMALL_BATCH records waits here, where waiting costs the
database nothing, until fewer than AT_ONCE large batches of this process are being
stored, and the last one's rest is over (REST_SHARE); then it has the whole deadline
for its own insert. Small batches and single
posts (the live traffic of phones that are online) never wait behind a storm. A batch
that waited WAIT_SECONDS answers 503 with a Retry-After that spreads the senders out
over the time the queue takes; the phone sends it again with its client ids.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from services.common.web.errors import ServiceUnavailable

# A phone's live batch (10 fixes every 30 s) is far below this; a flushed queue above.
SMALL_BATCH = 100
# One large insert at a time: the embedded database is bound by one core (it is one
# Python process), so a second concurrent insert only makes both slower.
AT_ONCE = 1
# After a large insert, its turn stays taken this many times as long. With ten classes
# online the database was busy most of the time already; large inserts back to back
# held live posts for seconds (during a storm a sentiment's p50 7.7 s, p99 20 s). With
# 1.0: p50 2.4 s, p99 8.5 s; with 3.0 the storm took 407 s instead of 263 and the live
# posts' p99 was 10.3 s (bench/soak.py --classes 10 --storm, 2026-12-07).
REST_SHARE = 1.0
# Shorter than the HTTP timeouts of phone clients (30-60 s) and the gateway's (300 s).
WAIT_SECONDS = 30.0
LONGEST_RETRY_AFTER = 120


class TakingTurns:
    """The turns of large batches in one process."""

    def __init__(
        self,
        at_once: int = AT_ONCE,
        wait_seconds: float = WAIT_SECONDS,
        rest_share: float = REST_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._slots = asyncio.Semaphore(at_once)
        self._at_once = at_once
        self._rest_share = rest_share
        self._wait_seconds = wait_seconds
        self._waiting = 0
        # How long a large insert took lately (for Retry-After); 0.35 s at first.
        self._insert_seconds = 0.35

    @asynccontextmanager
    async def turn(self, records: int) -> AsyncIterator[None]:
        """Holds a turn while the block stores `records` records (none for a small batch)."""
        if records <= SMALL_BATCH:
            yield
            return
        self._waiting += 1
        try:
            if self._slots.locked():
                await asyncio.wait_for(self._slots.acquire(), self._wait_seconds)
            else:  # a free turn is taken without a timer (and with no wait allowed too)
                await self._slots.acquire()
        except TimeoutError:
            raise ServiceUnavailable(
                "Busy storing other large batches; send this one again later",
                headers={"Retry-After": str(self.retry_after())},
            ) from None
        finally:
            self._waiting -= 1
        began = self._clock()
        try:
            yield
        finally:
            took = self._clock() - began
            self._insert_seconds = 0.8 * self._insert_seconds + 0.2 * took
            # The next large batch waits as long again: large batches get at most half
            # of the database's time, the live traffic the rest. The answer does not wait.
            rest = took * self._rest_share
            if rest > 0:
                asyncio.get_running_loop().call_later(rest, self._slots.release)
            else:
                self._slots.release()

    def retry_after(self) -> int:
        """Seconds until the batches waiting now are likely stored."""
        drain = self._waiting * self._insert_seconds * (1 + self._rest_share) / self._at_once
        return max(1, min(LONGEST_RETRY_AFTER, math.ceil(drain)))
