"""Large batches take turns at the database (services.ingest.admission): one large
insert at a time, small batches never wait behind them, and a batch that waited too
long is told when to come back. No database: the turns are asyncio's alone."""

from __future__ import annotations

import asyncio

import pytest

from services.common.web.errors import ServiceUnavailable
from services.ingest.admission import SMALL_BATCH, TakingTurns


def test_large_batches_take_turns_and_small_ones_do_not_wait() -> None:
    async def scenario() -> None:
        turns = TakingTurns(at_once=1, wait_seconds=30, rest_share=0)
        first_in, release_first = asyncio.Event(), asyncio.Event()
        order: list[str] = []

        async def large(name: str, hold: asyncio.Event | None = None) -> None:
            async with turns.turn(1000):
                order.append(f"{name} in")
                if hold is not None:
                    first_in.set()
                    await hold.wait()
                order.append(f"{name} out")

        first = asyncio.create_task(large("first", release_first))
        await first_in.wait()
        # Scheduled now, so it asks for its turn before the first can give it back.
        second = asyncio.create_task(large("second"))
        # A phone's live batch goes at once, beside the large insert.
        async with turns.turn(SMALL_BATCH):
            order.append("small")
        release_first.set()
        await asyncio.gather(first, second)
        assert order == ["first in", "small", "first out", "second in", "second out"]

    asyncio.run(scenario())


def test_a_batch_that_waited_too_long_is_told_when_to_come_back() -> None:
    async def scenario() -> None:
        turns = TakingTurns(at_once=1, wait_seconds=0, rest_share=0)
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with turns.turn(500):
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(ServiceUnavailable) as refused:
            async with turns.turn(500):
                pass
        assert int(refused.value.headers["Retry-After"]) >= 1
        release.set()
        await holder
        # Its turn came back: the next large batch goes at once.
        async with turns.turn(500):
            pass

    asyncio.run(scenario())


def test_after_a_large_insert_its_turn_rests_as_long() -> None:
    """An insert that took 10 s (by the injected clock) keeps the turn 10 s more: a large
    batch that cannot wait is told to come back, a small one goes at once."""

    async def scenario() -> None:
        readings = iter([100.0, 110.0])
        turns = TakingTurns(at_once=1, wait_seconds=0, rest_share=1.0, clock=lambda: next(readings))
        async with turns.turn(1000):
            pass
        async with turns.turn(10):
            pass
        with pytest.raises(ServiceUnavailable):
            async with turns.turn(1000):
                pass

    asyncio.run(scenario())
