"""What appending a batch to the audit trail costs as the trail grows: the median time
of one `append` (services.admin.research.audit) to a trail of --long blocks, against
one of --short blocks, on the embedded database, in the same run. The aim is a ratio
near 1: the end of the chain is found in the `last_seq` index, not by sorting the
trail. Machines are noisy: read the ratio.

    .venv/bin/python bench/audit_append.py [--short 50] [--long 3000] [--appends 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from beanie import init_beanie
from pymongo import AsyncMongoClient
from support import embedded_database

from services.admin.models import AuditBlock
from services.admin.research.trail import ChainEnd, append
from services.common.research.audit import AuditEntry
from services.common.research.pseudonyms import PseudonymEntry
from tests.support import audit_read


def batch(name: str) -> list[AuditEntry]:
    return [audit_read(f"{name}-{n}", participants=["P001"]) for n in range(3)]


async def median_append(client: AsyncMongoClient, name: str, blocks: int, appends: int) -> float:
    await init_beanie(database=client[name], document_models=[AuditBlock, PseudonymEntry])
    worker = ChainEnd()
    for n in range(blocks):
        await append(f"fill-{n}", batch(f"fill-{n}"), worker)
    times = []
    for n in range(appends):
        started = time.perf_counter()
        await append(f"timed-{n}", batch(f"timed-{n}"), ChainEnd() if n == 0 else worker)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def median_sorted_lookup(lookups: int) -> float:
    """The reference: the newest block found by sorting on `_id`, as before the index."""
    times = []
    for _ in range(lookups):
        started = time.perf_counter()
        await AuditBlock.get_pymongo_collection().find_one({}, {"_id": 1}, sort=[("_id", -1)])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    with embedded_database() as (uri, _pid):
        client: AsyncMongoClient = AsyncMongoClient(uri)
        short = await median_append(client, "bench_short", args.short, args.appends)
        long = await median_append(client, "bench_long", args.long, args.appends)
        sorted_lookup = await median_sorted_lookup(20)
        await client.close()
    print(f"append to a trail of {args.short:>5} blocks: median {short * 1000:6.2f} ms")
    print(f"append to a trail of {args.long:>5} blocks: median {long * 1000:6.2f} ms")
    print(f"ratio long/short: {long / short:.2f} (aim: below 1.5)")
    print(
        f"the end found by sorting {args.long} blocks (the old way): "
        f"{sorted_lookup * 1000:.2f} ms, {sorted_lookup / long:.1f}x a whole append"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", type=int, default=50, help="blocks in the short trail")
    parser.add_argument("--long", type=int, default=3000, help="blocks in the long trail")
    parser.add_argument("--appends", type=int, default=200, help="appends timed on each")
    asyncio.run(main(parser.parse_args()))
