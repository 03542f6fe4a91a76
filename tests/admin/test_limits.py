"""The shared rate limit, counted in a real database by several independent clients
(as several workers or replicas would)."""

from __future__ import annotations

import asyncio

import pytest
from beanie import init_beanie
from pymongo import AsyncMongoClient

from services.admin.limits import RateWindow, SharedRateLimit
from services.common.web.errors import TooManyRequests

MINUTE_START = 1_800_000_000.0 - 1_800_000_000.0 % 60


CLIENTS: list[AsyncMongoClient] = []


async def _limit(mongodb_uri: str, db_name: str, per_minute: int) -> SharedRateLimit:
    client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
    CLIENTS.append(client)
    await init_beanie(database=client[db_name], document_models=[RateWindow])
    return SharedRateLimit("test", per_minute, "slow down")


async def _close_clients() -> None:
    while CLIENTS:
        await CLIENTS.pop().close()


def test_the_limit_holds_per_key_and_refused_requests_do_not_count(
    mongodb_uri: str, db_name: str
) -> None:
    async def scenario() -> None:
        limit = await _limit(mongodb_uri, db_name, per_minute=3)
        for _ in range(3):
            await limit.check("10.0.0.1", now=MINUTE_START + 10)
        for _ in range(2):
            with pytest.raises(TooManyRequests) as refused:
                await limit.check("10.0.0.1", now=MINUTE_START + 10)
            assert refused.value.headers["Retry-After"] == "50"
        await limit.check("10.0.0.2", now=MINUTE_START + 10)  # other addresses are not affected
        stored = await RateWindow.get_pymongo_collection().find_one(
            {"_id": f"test:10.0.0.1:{int(MINUTE_START // 60)}"}
        )
        assert stored["requests"] == 3
        # Early in the next minute, most of the last one still counts...
        with pytest.raises(TooManyRequests) as refused:
            await limit.check("10.0.0.1", now=MINUTE_START + 61)
        # ...3 * (1 - (1 + wait) / 60) + 1 <= 3 once wait >= 19 s.
        assert refused.value.headers["Retry-After"] == "19"
        await limit.check("10.0.0.1", now=MINUTE_START + 80)
        # A request given back (it was not one the limit is for) frees its place.
        taken = await limit.check("10.0.0.3", now=MINUTE_START + 130)
        await limit.check("10.0.0.3", now=MINUTE_START + 130)
        await limit.release(taken)
        for _ in range(2):
            await limit.check("10.0.0.3", now=MINUTE_START + 130)
        with pytest.raises(TooManyRequests):
            await limit.check("10.0.0.3", now=MINUTE_START + 130)
        await _close_clients()

    asyncio.run(scenario())


def test_concurrent_requests_from_several_processes_cannot_exceed_the_limit(
    mongodb_uri: str, db_name: str
) -> None:
    """Each of 20 addresses sends 12 requests at once, through 4 clients: the first
    requests of a window race to insert it, and exactly 5 of each address's pass."""

    async def scenario() -> None:
        # Separate clients stand for separate workers: nothing is shared but the database.
        limits = [await _limit(mongodb_uri, db_name, per_minute=5) for _ in range(4)]

        async def attempt(limit: SharedRateLimit, address: str) -> bool:
            try:
                await limit.check(address, now=MINUTE_START + 30)
                return True
            except TooManyRequests:
                return False

        for n in range(20):
            address = f"10.0.1.{n}"
            allowed = await asyncio.gather(*(attempt(limits[i % 4], address) for i in range(12)))
            assert sum(allowed) == 5, address
        await _close_clients()

    asyncio.run(scenario())
