"""Banded reading gives exactly what one sorted query gives, over gaps, ties and
cursors, on the real database."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from services.common.web.pagination import Order, TimeCursor
from services.common.web.windows import BandedReader, DaysWithData

START = datetime(2025, 3, 1)
CEILING = datetime(2026, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1)


def records() -> list[dict]:
    """Two participants: bursts of many records a minute apart (with shared times),
    single records days apart, and a 40-day gap with nothing at all."""
    rng = random.Random(7)
    made = []
    for offset_days in [*range(0, 5), *range(45, 50), 90]:
        day = START + timedelta(days=offset_days)
        for n in range(rng.randint(0, 60)):
            at = day + timedelta(minutes=rng.randint(0, 24 * 60 - 1))
            for _ in range(1 + (n % 3 == 0)):  # some share a time
                made.append({"_id": ObjectId(), "user_id": f"P{n % 2}", "timestamp": at})
    return made


def days_of(documents: list[dict]) -> DaysWithData:
    counts: dict[str, int] = {}
    for document in documents:
        day = document["timestamp"].strftime("%Y-%m-%d")
        counts[day] = counts.get(day, 0) + 1
    return DaysWithData(counts=counts)


QUERIES = [
    {},
    {"user_id": "P1"},
    {"timestamp": {"$gte": datetime(2025, 3, 3, 12, tzinfo=UTC)}},
    {"timestamp": {"$lt": datetime(2025, 4, 16, 6, tzinfo=UTC)}, "user_id": "P0"},
    {
        "timestamp": {
            "$gte": datetime(2025, 3, 2, tzinfo=UTC),
            "$lt": datetime(2025, 4, 17, tzinfo=UTC),
        }
    },
]


@pytest.mark.slow  # thousands of small pages read from the database
@pytest.mark.parametrize("query", QUERIES)
def test_pages_and_walks_match_one_sorted_query(
    mongodb_uri: str, db_name: str, query: dict
) -> None:
    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        collection = client[db_name]["records"]
        documents = records()
        await collection.insert_many(documents)
        await collection.create_index([("user_id", 1), ("timestamp", 1), ("_id", 1)])
        await collection.create_index([("timestamp", 1), ("_id", 1)])
        for order in (Order.DESC, Order.ASC):
            direction = 1 if order is Order.ASC else -1
            expected = await (
                collection.find(query).sort([("timestamp", direction), ("_id", direction)])
            ).to_list()
            # With the days the rollups know, with extra days listed, and with none.
            known = days_of(documents)
            extra = DaysWithData(counts={**known.counts, "2025-03-20": 5})
            # The last: no day counts and no bound but the calendar's end, as vlog
            # lists read (bands must not grow past the dates Python can hold).
            for days, ceiling in (
                (known, CEILING),
                (extra, CEILING),
                (None, CEILING),
                (None, LATEST),
            ):
                reader = BandedReader(collection, query, ceiling, days)
                for limit in (3, 50, 1000):
                    walked, cursor = [], None
                    while True:
                        page = await reader.page(order, limit + 1, cursor)
                        walked += page[:limit]
                        if len(page) <= limit:
                            break
                        last = page[limit - 1]
                        cursor = TimeCursor.after(order, last["timestamp"], last["_id"])
                    assert [d["_id"] for d in walked] == [d["_id"] for d in expected]
                if order is Order.ASC:
                    streamed = [d["_id"] async for d in reader.walk(100)]
                    assert streamed == [d["_id"] for d in expected]
        await client.close()

    asyncio.run(scenario())


def test_stream_bands_are_contiguous_and_sized_by_the_day_counts() -> None:
    counts = {f"2025-03-{day:02d}": 9000 for day in range(1, 11)}
    reader = BandedReader(None, {}, CEILING, DaysWithData(counts=counts))  # type: ignore[arg-type]
    bands = reader._stream_bands(datetime(2000, 1, 1), datetime(2026, 1, 1))
    assert bands[0][0] == datetime(2000, 1, 1)
    assert bands[-1][1] == datetime(2026, 1, 1)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
    # 9,000 a day: a band closes once it holds 20,000 or more, every third day.
    assert [band[1].day for band in bands[:-1]] == [4, 7, 10]
