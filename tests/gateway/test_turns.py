"""Turns of the exports that cost memory (services.gateway.exports.turns), in process."""

from __future__ import annotations

import asyncio
import gc

import pytest

from services.common.web.errors import ServiceUnavailable
from services.gateway.exports.turns import ExportTurns


async def pieces(count: int):  # type: ignore[no-untyped-def]
    for n in range(count):
        yield bytes([n])


def test_a_turn_is_held_until_the_download_ends_however_it_ends() -> None:
    async def scenario() -> None:
        turns = ExportTurns(at_once=2, wait_seconds=0)
        await turns.take()
        finished = turns.holding(pieces(3))
        await turns.take()
        dropped = turns.holding(pieces(3))
        with pytest.raises(ServiceUnavailable) as refused:
            await turns.take()
        assert refused.value.headers["Retry-After"]
        assert [piece async for piece in finished] == [b"\x00", b"\x01", b"\x02"]
        await turns.take()  # the finished download gave its turn back
        third = turns.holding(pieces(1))
        del dropped  # the client left before the first piece: never iterated
        gc.collect()
        await turns.take()
        await third.aclose()  # type: ignore[attr-defined]
        await turns.take()

    asyncio.run(scenario())


def test_a_waiting_export_gets_the_next_turn() -> None:
    async def scenario() -> None:
        turns = ExportTurns(at_once=1, wait_seconds=30)
        await turns.take()
        held = turns.holding(pieces(1))
        waiting = asyncio.create_task(turns.take())
        # The only turn is held: the waiting export gets it when the download ends.
        assert [piece async for piece in held] == [b"\x00"]
        await asyncio.wait_for(waiting, 5)

    asyncio.run(scenario())
