"""What recording reads in the audit trail costs: reads per second through a gateway
that records them against one that does not (EMOGO_AUDIT=off), in the same run.

Starts a throw-away stack (embedded SecantusDB, the services, a recording gateway)
and a second one on the same database with recording off, stores 300 sentiments of
one participant, then alternates rounds of the same viewer read through each gateway
(`GET /api/sentiments?user_id=...&limit=100`: a list, whose records the recorder
counts) and prints the median rates and their ratio. At the end it checks that the
trail holds one entry per recorded read. Machines are noisy: read the ratio.

    .venv/bin/python bench/audit.py [--seconds 8] [--rounds 5] [--concurrency 16]

Rounds of 4 s gave ratios from 0.83 to 0.94 on the same code here; 5 rounds of 8 s
are the default because their median holds still.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from support import bearer, rate, throwaway_stack

PARTICIPANT = "P-bench-audit"


async def measure(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=headers, trust_env=False) as client:
        await client.get(url)  # warm the connection pool

        async def one_request() -> int:
            response = await client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            return 1

        return await rate(one_request, seconds, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per gateway, alternating")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()

    with (
        throwaway_stack() as (recording, _),
        # The same database, recording off.
        throwaway_stack(recording.mongodb_uri, EMOGO_AUDIT="off") as (plain, _),
    ):
        headers = bearer(recording, "viewer")
        records = [
            {"user_id": PARTICIPANT, "emotion": "calm", "intensity": 0.5, "timestamp": n}
            for n in range(1763000000, 1763000300)
        ]
        stored = httpx.post(
            f"{recording.url('gateway')}/api/sentiments/batch",
            json=records,
            headers=bearer(recording, "device"),
            timeout=60,
        )
        stored.raise_for_status()
        query = f"/api/sentiments?user_id={PARTICIPANT}&limit=100"
        targets = {
            "recorded": (f"{recording.url('gateway')}{query}", headers),
            "not recorded": (f"{plain.url('gateway')}{query}", bearer(plain, "viewer")),
        }
        rates: dict[str, list[float]] = {name: [] for name in targets}
        for round_number in range(1, args.rounds + 1):
            for name, (url, target_headers) in targets.items():
                measured = asyncio.run(measure(url, target_headers, args.seconds, args.concurrency))
                rates[name].append(measured)
                print(f"round {round_number} {name:12s} {measured:8.0f} reads/s", flush=True)
        print()
        for name in targets:
            print(f"{name:12s} median {statistics.median(rates[name]):8.0f} reads/s")
        ratio = statistics.median(rates["recorded"]) / statistics.median(rates["not recorded"])
        print(f"\nrecorded/not recorded read rate: {ratio:.2f} (aim: >= 0.90)")

        time.sleep(1)  # the last batch of entries
        admin = bearer(recording, "admin")
        check = httpx.get(
            f"{recording.url('gateway')}/api/audit/verify", headers=admin, timeout=120
        ).json()
        print(f"audit trail: {check['entries']} entries, intact: {check['ok']}")


if __name__ == "__main__":
    main()
