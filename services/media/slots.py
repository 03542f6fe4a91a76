"""Places among the uploads a media process receives at once, shared fairly.

Each upload in progress keeps a temporary copy on local disk for decoding and costs
CPU, so a process takes at most `total` at once. The invariant: a few slow or greedy
writers cannot keep everyone else's uploads out.

- A writer (its credential and its address) holds at most `per_writer` places; one
  more is answered 429 at once.
- An upload must keep up `min_rate` bytes a second while its bytes arrive (over its
  life so far, after a first `grace` seconds); once they are all here it is not
  judged. When every place is taken, a newcomer takes the place of the slowest upload
  below that rate: that upload ends with 408, its bytes are removed (the client may
  resume or send again), and the newcomer starts at once. Only when every upload in
  progress keeps up the rate is a newcomer answered 429.
- A writer whose bytes are all here (a finished resumable upload) waits for a place
  at most `wait_seconds`, then gets 503 with Retry-After: it never waits unbounded.

The clock is injected, so the rules are tested without waiting (tests/media/test_slots.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from services.common.web.errors import RequestTimeout, ServiceUnavailable, TooManyRequests

RETRY_SECONDS = 10


@dataclass(eq=False)
class Place:
    """One upload in progress: who sends it, since when, how much has arrived."""

    writer: str
    started: float
    task: asyncio.Task | None
    received: int = 0
    # Every byte is here (the rest is decoding and storing): no longer judged by rate.
    received_all: bool = False
    taken_over: bool = False
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def rate(self, now: float) -> float:
        return self.received / max(now - self.started, 1e-9)


class UploadSlots:
    def __init__(
        self,
        total: int,
        per_writer: int,
        min_rate: float,
        grace: float = 10.0,
        wait_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.per_writer = per_writer
        self.min_rate = min_rate
        self.grace = grace
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.places: list[Place] = []
        self._freed = asyncio.Condition()
        # Set while a finished upload waits for a place (what the tests wait for).
        self.someone_waits = asyncio.Event()

    def _slowest_behind(self) -> Place | None:
        """The upload in progress furthest below the minimum rate, past its grace."""
        now = self.clock()
        behind = [
            place
            for place in self.places
            if not place.taken_over
            and not place.received_all
            and now - place.started >= self.grace
            and place.rate(now) < self.min_rate
        ]
        return min(behind, key=lambda place: place.rate(now), default=None)

    def _admit(self, writer: str) -> Place:
        """A place for `writer` now, taking one from a trickle if need be; 429 when it
        holds its share already or every upload keeps up."""
        mine = sum(1 for place in self.places if place.writer == writer)
        if mine >= self.per_writer:
            raise TooManyRequests(
                f"This writer has {mine} uploads in progress, the most one writer may have; "
                "send the next when one is done",
                headers={"Retry-After": str(RETRY_SECONDS)},
            )
        if len([p for p in self.places if not p.taken_over]) >= self.total:
            slowest = self._slowest_behind()
            if slowest is None:
                raise TooManyRequests(
                    "Too many uploads in progress; retry shortly",
                    headers={"Retry-After": str(RETRY_SECONDS)},
                )
            self._take_over(slowest)
        place = Place(writer, self.clock(), asyncio.current_task())
        self.places.append(place)
        return place

    def _take_over(self, place: Place) -> None:
        place.taken_over = True
        if place.task is not None and not place.task.done():
            place.task.cancel(msg=TAKEN_OVER)

    @contextlib.asynccontextmanager
    async def hold(self, writer: str) -> AsyncIterator[Place]:
        """A place for an upload whose bytes are still to arrive (see the module)."""
        place = self._admit(writer)
        async with self._holding(place):
            yield place

    @contextlib.asynccontextmanager
    async def hold_waiting(self, writer: str) -> AsyncIterator[Place]:
        """A place for an upload whose bytes are all here: waits for one, but not
        longer than `wait_seconds` (503 with Retry-After then)."""
        deadline = self.clock() + self.wait_seconds
        while True:
            try:
                place = self._admit(writer)
                break
            except TooManyRequests:
                self.someone_waits.set()
                left = deadline - self.clock()
                if left <= 0:
                    self.someone_waits.clear()
                    raise ServiceUnavailable(
                        "Every upload place is busy; the bytes are kept: finish it again shortly",
                        headers={"Retry-After": str(RETRY_SECONDS)},
                    ) from None
                async with self._freed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._freed.wait(), timeout=min(left, 1.0))
        self.someone_waits.clear()
        async with self._holding(place):
            yield place

    async def wake_waiters(self) -> None:
        """Lets every waiting finished upload look again (at the places and the clock)."""
        async with self._freed:
            self._freed.notify_all()

    @contextlib.asynccontextmanager
    async def _holding(self, place: Place) -> AsyncIterator[None]:
        try:
            yield
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not place.taken_over or task is None or task.uncancel() != 0:
                raise
            raise RequestTimeout(
                f"The upload arrived slower than {self.min_rate:g} bytes/s while others "
                "waited; its place went to another upload. Send it again (or resume it)"
            ) from None
        finally:
            self.places.remove(place)
            await self.wake_waiters()

    def metered(self, place: Place, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, counted into the place's rate as they arrive."""

        async def counting() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                place.received += len(chunk)
                yield chunk
            place.received_all = True

        return counting()


# The message a taken-over upload's task is cancelled with.
TAKEN_OVER = "upload place taken over by another upload"
