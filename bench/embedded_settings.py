"""What the embedded database's own settings cost per write: as `make run` started it
before (advertising a one-node replica set, so it keeps an oplog: every write is also
written there, a 255 KB GridFS chunk included) against `--standalone` (no oplog).

For each mode, a fresh embedded database, then the database's CPU (from /proc, as
`cpu_cost.py` reads it) for three kinds of write EmoGo makes, through PyMongo's async
client with the launcher's URI:

  - single inserts at concurrency 16 (a sentiment each),
  - batches of 1,000 GPS fixes into a collection with the GPS collection's indexes,
  - 8 MB videos into GridFS (255 KB chunks, as the media service writes them).

Both modes run in the same run, alternately, `--rounds` times each; printed per kind:
the CPU ms per write of each and the ratio standalone / replica set.

    .venv/bin/python bench/embedded_settings.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cpu_cost import cpu_seconds
from gridfs import AsyncGridFSBucket
from pymongo import ASCENDING, AsyncMongoClient

from services.launcher.config import local_mongodb_uri
from services.launcher.database import mongo_ready, secantus_argv
from tests.support import free_port, wait_until

# Each mode's argv from the launcher's (which has --standalone since this comparison).
MODES = {"replica set (oplog)": False, "--standalone (no oplog)": True}
KINDS = ("single insert", "fix in a batch of 1000", "8 MB video into GridFS")


async def writes(uri: str, pid: int) -> dict[str, float]:
    """CPU ms of the database per write of each kind."""
    client: AsyncMongoClient = AsyncMongoClient(uri, w="majority", journal=True)
    database = client["emogo_bench_settings"]
    fixes = database["gps_coordinates"]
    for keys in (
        [("user_id", ASCENDING), ("client_id", ASCENDING), ("study_id", ASCENDING)],
        [("timestamp", -1), ("_id", -1)],
        [("study_id", 1), ("timestamp", -1), ("_id", -1)],
        [("received_at", 1)],
    ):
        await fixes.create_index(keys)
    costs = {}

    singles = database["sentiments"]
    numbers = iter(range(3000))

    async def writer() -> None:
        for n in numbers:
            await singles.insert_one({"user_id": f"P{n % 60}", "emotion": "calm", "n": n})

    before = cpu_seconds(pid)
    await asyncio.gather(*(writer() for _ in range(16)))
    costs[KINDS[0]] = (cpu_seconds(pid) - before) * 1000 / 3000

    before = cpu_seconds(pid)
    now = time.time()
    for batch in range(10):
        await fixes.insert_many(
            [
                {
                    "user_id": f"P{batch}",
                    "client_id": f"{batch}-{n}",
                    "study_id": "s",
                    "latitude": 25.0,
                    "longitude": 121.5,
                    "timestamp": now - n,
                    "received_at": now,
                }
                for n in range(1000)
            ],
            ordered=False,
        )
    costs[KINDS[1]] = (cpu_seconds(pid) - before) * 1000 / 10_000

    bucket = AsyncGridFSBucket(database, bucket_name="videos", chunk_size_bytes=255 * 1024)
    before = cpu_seconds(pid)
    for n in range(5):
        await bucket.upload_from_stream(f"v{n}.mp4", os.urandom(8 * 1024 * 1024))
    costs[KINDS[2]] = (cpu_seconds(pid) - before) * 1000 / 5
    await client.close()
    return costs


def one_round(standalone: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="emogo-bench-settings-") as folder:
        port = free_port()
        argv = secantus_argv(port, Path(folder))
        if not standalone:
            argv.remove("--standalone")
        process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            uri = local_mongodb_uri(port)
            wait_until(mongo_ready(uri), 30, "the embedded database")
            return asyncio.run(writes(uri, process.pid))
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for number in range(args.rounds):
        order = list(MODES) if number % 2 == 0 else list(reversed(MODES))
        for mode in order:
            results[mode].append(one_round(MODES[mode]))
    print(f"database CPU ms per write, median of {args.rounds} rounds")
    print(f"{'':26}" + "".join(f"{mode:>26}" for mode in MODES) + f"{'ratio':>8}")
    for kind in KINDS:
        medians = [statistics.median(r[kind] for r in results[mode]) for mode in MODES]
        print(
            f"{kind:26}"
            + "".join(f"{value:26.3f}" for value in medians)
            + f"{medians[1] / medians[0]:8.2f}"
        )


if __name__ == "__main__":
    main()
