"""What a write costs the embedded database as writes pile up, with and without the
driver's retryable writes (why `local_mongodb_uri` turns them off).

For each mode, a fresh embedded database started as `make run` starts it, and blocks
of single `insert_one` calls at concurrency 16 from PyMongo's async client; after each
block, the database's CPU per insert (from /proc, as `cpu_cost.py` reads it). Both
modes run in the same run, one after the other, each on its own fresh database.

    .venv/bin/python bench/embedded_writes.py [--blocks 8] [--inserts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator

from cpu_cost import cpu_seconds
from pymongo import AsyncMongoClient
from support import embedded_database

# Whether the driver retries writes, as the URI of each mode says (the launcher's URI
# turns retryable writes off).
MODES = {
    "retryable writes (the driver's default)": True,
    "retryWrites=false (what make run uses)": False,
}


async def insert_blocks(uri: str, database_pid: int, blocks: int, inserts: int) -> list[float]:
    """The database's CPU ms per insert, block by block."""
    client: AsyncMongoClient = AsyncMongoClient(uri)
    collection = client["emogo_bench_writes"]["writes"]
    costs = []

    async def writer(numbers: Iterator[int]) -> None:
        for n in numbers:
            await collection.insert_one({"n": n, "emotion": "happy", "intensity": 0.5})

    for _ in range(blocks):
        numbers = iter(range(inserts))
        before = cpu_seconds(database_pid)
        await asyncio.gather(*(writer(numbers) for _ in range(16)))
        costs.append((cpu_seconds(database_pid) - before) * 1000 / inserts)
    await client.close()
    return costs


def measure(retry_writes: bool, blocks: int, inserts: int) -> list[float]:
    with embedded_database() as (uri, database_pid):
        uri = uri.replace("retryWrites=false", f"retryWrites={str(retry_writes).lower()}")
        return asyncio.run(insert_blocks(uri, database_pid, blocks, inserts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--inserts", type=int, default=2000, help="inserts per block")
    args = parser.parse_args()
    results = {}
    for title, retry_writes in MODES.items():
        print(f"  measuring {title} ...", file=sys.stderr, flush=True)
        results[title] = measure(retry_writes, args.blocks, args.inserts)
    print("database CPU ms per insert, after each block of", args.inserts)
    print(
        f"{'inserts so far':<44}"
        + "".join(f"{(i + 1) * args.inserts:>8}" for i in range(args.blocks))
    )
    for title, costs in results.items():
        print(f"{title:<44}" + "".join(f"{cost:8.2f}" for cost in costs))
    retried, plain = results.values()
    print(f"last block: retryable writes cost {retried[-1] / plain[-1]:.1f} times as much")


if __name__ == "__main__":
    main()
