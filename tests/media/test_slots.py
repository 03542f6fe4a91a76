"""How upload places are shared (services.media.slots), in process with an injected
clock: no processes, no sleeps. Each upload below says when it holds its place, and a
finished upload when it waits for one, so the tests wait for those, never for time."""

from __future__ import annotations

import asyncio

import pytest

from services.common.web.errors import RequestTimeout, ServiceUnavailable, TooManyRequests
from services.media.slots import UploadSlots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slots(clock: Clock, total: int = 4, per_writer: int = 2) -> UploadSlots:
    return UploadSlots(
        total=total, per_writer=per_writer, min_rate=32 * 1024, grace=10, clock=clock
    )


async def holding(
    shared: UploadSlots, writer: str, release: asyncio.Event, received: int = 0
) -> asyncio.Task[str]:
    """An upload that holds its place until `release`, started and holding when this
    returns; its task tells what became of it."""
    holds = asyncio.Event()

    async def upload() -> str:
        try:
            async with shared.hold(writer) as place:
                place.received = received
                holds.set()
                await release.wait()
        except RequestTimeout:
            return "taken over"
        return "finished"

    task = asyncio.create_task(upload())
    await holds.wait()
    return task


async def four_writers(
    shared: UploadSlots, clock: Clock, release: asyncio.Event, received: int
) -> list[asyncio.Task[str]]:
    """Four writers holding every place, `received` bytes (plus their number) each when
    the clock has moved 20 s on."""
    uploads = [await holding(shared, f"writer@{n}", release, received + n) for n in range(4)]
    clock.now += 20
    return uploads


def test_one_writer_holds_at_most_its_share() -> None:
    async def scenario() -> None:
        clock, release = Clock(), asyncio.Event()
        shared = slots(clock)
        held = [await holding(shared, "phone@1", release) for _ in range(2)]
        with pytest.raises(TooManyRequests, match="uploads in progress"):
            async with shared.hold("phone@1"):
                pass
        async with shared.hold("phone@2"):  # another writer still gets a place
            pass
        release.set()
        assert await asyncio.gather(*held) == ["finished", "finished"]

    asyncio.run(scenario())


def test_a_newcomer_takes_the_place_of_the_slowest_trickle() -> None:
    async def scenario() -> None:
        clock, release = Clock(), asyncio.Event()
        shared = slots(clock)
        # Four writers sending 1.5 KiB/s, 20 s in: 30 KiB each, the first the slowest.
        trickles = await four_writers(shared, clock, release, 30 * 1024)
        async with shared.hold("fifth@9") as place:
            assert place.writer == "fifth@9"
            outcomes = await asyncio.wait_for(asyncio.shield(trickles[0]), 5)
        assert outcomes == "taken over"
        release.set()
        assert await asyncio.gather(*trickles[1:]) == ["finished"] * 3

    asyncio.run(scenario())


def test_uploads_that_keep_up_are_not_taken_over() -> None:
    async def scenario() -> None:
        clock, release = Clock(), asyncio.Event()
        shared = slots(clock)
        fast = await four_writers(shared, clock, release, 20 * 1024 * 1024)
        with pytest.raises(TooManyRequests, match="Too many uploads"):
            async with shared.hold("fifth@9"):
                pass
        # Within its first seconds an upload is not judged by its rate.
        young = slots(Clock(), total=1)
        first = await holding(young, "a@1", release)
        with pytest.raises(TooManyRequests):
            async with young.hold("b@2"):
                pass
        release.set()
        assert await asyncio.gather(*fast, first) == ["finished"] * 5

    asyncio.run(scenario())


def test_a_finished_upload_waits_for_a_place_but_not_forever() -> None:
    async def scenario() -> None:
        clock, release = Clock(), asyncio.Event()
        shared = slots(clock, total=1)
        busy = await holding(shared, "a@1", release, 10**9)

        async def finish() -> str:
            async with shared.hold_waiting("b@stored"):
                return "stored"

        waiting = asyncio.create_task(finish())
        await shared.someone_waits.wait()
        assert not waiting.done()
        release.set()  # the place is freed: the waiter takes it at once
        assert await waiting == "stored"
        assert await busy == "finished"

        again = asyncio.Event()
        busy = await holding(shared, "a@1", again, 10**9)
        late = asyncio.create_task(finish())
        await shared.someone_waits.wait()
        clock.now += shared.wait_seconds + 1
        await shared.wake_waiters()  # to look at the clock again
        with pytest.raises(ServiceUnavailable):
            await late
        again.set()
        await busy

    asyncio.run(scenario())


def test_an_upload_whose_bytes_are_all_here_is_not_taken_over() -> None:
    """Decoding a small video can take longer than its bytes took to arrive: its rate
    falls, but it no longer holds anyone up by trickling."""

    async def scenario() -> None:
        clock, release = Clock(), asyncio.Event()
        shared = slots(clock, total=1)
        received = asyncio.Event()

        async def decoding() -> str:
            async with shared.hold("a@1") as place:

                async def one_piece():  # type: ignore[no-untyped-def]
                    yield b"x" * 1024

                async for _ in shared.metered(place, one_piece()):
                    pass
                received.set()
                await release.wait()
            return "stored"

        first = asyncio.create_task(decoding())
        await received.wait()
        clock.now += 60  # 1 KiB in a minute: far below the rate, but complete
        with pytest.raises(TooManyRequests):
            async with shared.hold("b@2"):
                pass
        release.set()
        assert await first == "stored"

    asyncio.run(scenario())
