"""Appending to the audit trail in the real database: workers that each remember where
the chain ended still chain every batch after the newest stored entry, a batch sent
again is stored once, and a trail restored from an older copy goes on from its own end.
No processes: `append` is called directly, each ChainEnd standing for one worker."""

from __future__ import annotations

import asyncio

from beanie import init_beanie
from pymongo import AsyncMongoClient

from services.admin.models import AuditBlock
from services.admin.research.trail import ChainEnd, append, blocks
from services.common.research.audit import AuditEntry, verify
from tests.support import audit_read


def batch(name: str, size: int) -> list[AuditEntry]:
    return [audit_read(f"{name}-{n}") for n in range(size)]


def test_workers_chain_every_batch_after_the_newest_entry(mongodb_uri: str, db_name: str) -> None:
    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        await init_beanie(database=client[db_name], document_models=[AuditBlock])
        first, second = ChainEnd(), ChainEnd()
        # Interleaved: each worker's remembered end is behind the other's appends.
        for n in range(6):
            await append(f"batch-{n}", batch(f"b{n}", n + 1), first if n % 2 else second)
        await append("batch-3", batch("b3", 4), first)  # sent again: stored once
        # Both at once: one loses the race on the block's id and chains again.
        await asyncio.gather(
            append("batch-6", batch("b6", 2), first), append("batch-7", batch("b7", 3), second)
        )
        check = await verify(blocks())
        assert (check.ok, check.entries) == (True, sum(range(1, 7)) + 2 + 3)
        await client.close()

    asyncio.run(scenario())


def test_a_trail_restored_from_an_older_copy_goes_on_from_its_own_end(
    mongodb_uri: str, db_name: str
) -> None:
    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        await init_beanie(database=client[db_name], document_models=[AuditBlock])
        worker = ChainEnd()
        for n in range(4):
            await append(f"batch-{n}", batch(f"b{n}", 5), worker)
        assert worker.seen_seq == 20
        # The copy held the first two batches; the worker still remembers seq 20.
        await AuditBlock.get_pymongo_collection().delete_many({"_id": {"$gt": 10}})
        await append("after-restore", batch("r", 3), worker)
        check = await verify(blocks())
        assert (check.ok, check.entries) == (True, 13)
        assert worker.seen_seq == 13
        await client.close()

    asyncio.run(scenario())
