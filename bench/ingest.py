"""Ingest throughput: events per second through the gateway against raw PyMongo.

Starts a throw-away stack (embedded SecantusDB, as `make run`), then alternates
rounds of
  - single records: `POST /api/sentiments` through the gateway vs. `insert_one`;
  - batches of 500: `POST /api/sentiments/batch` through the gateway vs. `insert_many`;
with the same concurrency, into the same database (the raw side writes to a
collection with the same indexes). Every record carries a fresh client id, so the
idempotency index does its work on both sides. Then it streams every stored
sentiment as NDJSON through the gateway, against a raw cursor read of the same
records, while sampling the ingest service's memory. Read the ratios.

Last, what durability costs: raw `insert_one` and `insert_many` rates against the
embedded server started as `make run` starts it (each commit synced to disk) with
majority/journal write concern, against one started without syncing and writes with
w=1, the setup before "confirmed means durable", side by side.

    .venv/bin/python bench/ingest.py [--seconds 4] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from datetime import UTC, datetime

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient
from support import bearer, embedded_database, rate, throwaway_stack

from services.common.runtime.database import durable_write_concern
from services.ingest.models import telemetry_indexes
from tests.support import PeakMemory

BATCH = 500
EMOTIONS = ("happy", "sad", "calm", "anxious", "excited", "neutral")
sequence = itertools.count()


def record(participant: str) -> dict:
    n = next(sequence)
    return {
        "user_id": participant,
        "emotion": EMOTIONS[n % len(EMOTIONS)],
        "intensity": (n % 100) / 100,
        "timestamp": 1763867320 + n,
        "client_id": f"c-{n}",
    }


def stored_form(sent: dict) -> dict:
    """What the service stores for `sent`, for the raw side."""
    now = datetime.now(UTC)
    return {
        "_id": ObjectId(),
        **sent,
        "timestamp": datetime.fromtimestamp(sent["timestamp"], UTC),
        "note": None,
        "context": None,
        "received_at": now,
    }


async def run_rounds(config, args: argparse.Namespace) -> dict[str, list[float]]:
    limits = httpx.Limits(max_connections=args.concurrency)
    headers = bearer(config, "device")
    gateway = httpx.AsyncClient(
        base_url=config.url("gateway"), headers=headers, limits=limits, timeout=60
    )
    # The same write concern as the services, so both sides wait for the same durability.
    mongo = AsyncMongoClient(
        config.mongodb_uri, tz_aware=True, **durable_write_concern(config.mongodb_uri)
    )
    raw = mongo["emogo"]["bench_raw_sentiments"]
    await raw.create_indexes(telemetry_indexes())

    async def api_single() -> int:
        response = await gateway.post("/api/sentiments", json=record("bench-single"))
        assert response.status_code == 201, response.text
        return 1

    async def raw_single() -> int:
        await raw.insert_one(stored_form(record("bench-single")))
        return 1

    async def api_batch() -> int:
        batch = [record("bench-batch") for _ in range(BATCH)]
        response = await gateway.post("/api/sentiments/batch", json=batch)
        assert response.json()["stored"] == BATCH, response.text
        return BATCH

    async def raw_batch() -> int:
        await raw.insert_many([stored_form(record("bench-batch")) for _ in range(BATCH)])
        return BATCH

    targets = {
        "single/gateway": (api_single, args.concurrency),
        "single/raw": (raw_single, args.concurrency),
        "batch/gateway": (api_batch, max(1, args.concurrency // 2)),
        "batch/raw": (raw_batch, max(1, args.concurrency // 2)),
    }
    rates: dict[str, list[float]] = {name: [] for name in targets}
    try:
        await api_single()  # warm connections and caches
        await raw_single()
        for round_number in range(1, args.rounds + 1):
            # Collections grow as rounds go by; alternate the order so neither side
            # always meets the larger one.
            names = list(targets) if round_number % 2 else list(reversed(targets))
            for name in names:
                step, concurrency = targets[name]
                value = await rate(step, args.seconds, concurrency)
                rates[name].append(value)
                print(f"round {round_number} {name:15s} {value:9.0f} events/s", flush=True)
    finally:
        await gateway.aclose()
        await mongo.close()
    return rates


async def stream_rates(config, ingest_pid: int) -> None:
    headers = bearer(config, "viewer")
    async with httpx.AsyncClient(base_url=config.url("gateway"), headers=headers) as gateway:
        with PeakMemory(ingest_pid) as memory:
            began = time.perf_counter()
            lines = 0
            async with gateway.stream("GET", "/api/sentiments/stream", timeout=600) as response:
                async for chunk in response.aiter_bytes():
                    lines += chunk.count(b"\n")
            api_seconds = time.perf_counter() - began
    mongo = AsyncMongoClient(config.mongodb_uri, tz_aware=True)
    began = time.perf_counter()
    read = 0
    cursor = mongo["emogo"]["sentiments"].find().sort([("timestamp", 1), ("_id", 1)])
    async for _ in cursor.batch_size(1000):
        read += 1
    raw_seconds = time.perf_counter() - began
    await mongo.close()
    mib = 1024 * 1024
    print(f"\nNDJSON stream through the gateway: {lines} records, {lines / api_seconds:.0f}/s")
    print(f"raw cursor read:                   {read} records, {read / raw_seconds:.0f}/s")
    print(f"stream/raw-read ratio: {(lines / api_seconds) / (read / raw_seconds):.2f}")
    print(
        f"ingest RSS: {memory.baseline / mib:.0f} MiB before, peak {memory.peak / mib:.0f} MiB "
        f"while streaming ({(memory.peak - memory.baseline) / mib:+.1f} MiB)"
    )


async def durability_cost(args: argparse.Namespace) -> None:
    with (
        embedded_database(durable=True) as (durable_uri, _),
        embedded_database(durable=False) as (fast_uri, _),
    ):
        clients = {
            "durable": AsyncMongoClient(durable_uri, **durable_write_concern(durable_uri)),
            "w1-unsynced": AsyncMongoClient(fast_uri, w=1),
        }
        rates: dict[str, list[float]] = {}
        try:
            for round_number in range(1, args.rounds + 1):
                order = list(clients) if round_number % 2 else list(reversed(clients))
                for name in order:
                    raw = clients[name]["emogo"]["bench_durability"]

                    async def single(raw=raw) -> int:
                        await raw.insert_one(stored_form(record("bench-durable")))
                        return 1

                    async def batch(raw=raw) -> int:
                        docs = [stored_form(record("bench-durable")) for _ in range(BATCH)]
                        await raw.insert_many(docs)
                        return BATCH

                    for kind, step, workers in (
                        ("single", single, args.concurrency),
                        ("batch", batch, max(1, args.concurrency // 2)),
                    ):
                        value = await rate(step, args.seconds, workers)
                        rates.setdefault(f"{kind}/{name}", []).append(value)
                        print(f"round {round_number} {kind}/{name:12s} {value:9.0f} events/s")
        finally:
            for client in clients.values():
                await client.close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for kind in ("single", "batch"):
        ratio = medians[f"{kind}/durable"] / medians[f"{kind}/w1-unsynced"]
        print(f"{kind:6s} inserts, durable/unsynced: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target, alternating")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    args = parser.parse_args()

    with throwaway_stack() as (config, supervisor):
        rates = asyncio.run(run_rounds(config, args))
        print(f"\n{'target':15s} {'median events/s':>16s}")
        medians = {name: statistics.median(values) for name, values in rates.items()}
        for name, value in medians.items():
            print(f"{name:15s} {value:16.0f}")
        single = medians["single/gateway"] / medians["single/raw"]
        batch = medians["batch/gateway"] / medians["batch/raw"]
        print(f"\nsingle records, gateway/raw insert_one:  {single:.2f} (aim: >= 0.60)")
        print(f"batches of {BATCH}, gateway/raw insert_many: {batch:.2f} (aim: >= 0.70)")
        asyncio.run(stream_rates(config, supervisor.processes["ingest"].pid))
    print("\nWhat durability costs (raw inserts):")
    asyncio.run(durability_cost(args))


if __name__ == "__main__":
    main()
