"""Gateway overhead: small GETs per second through the gateway vs. directly to a service.

Starts a throw-away stack (SecantusDB, the services, the gateway) in a temporary folder on free
ports, then alternates rounds of the same authenticated GET (`/api/v1/whoami` on the
admin service) sent directly and through the gateway, and prints the median rates and
their ratio. Machines are noisy: read the ratio, not the absolute numbers.

    .venv/bin/python bench/gateway_overhead.py [--seconds 4] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from support import bearer, rate, throwaway_stack


async def measure(
    url: str, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Requests per second and per-request latencies over `seconds` with `concurrency` workers."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=headers, trust_env=False) as client:
        await client.get(url)  # warm the connection pool

        async def one_request() -> int:
            started = time.perf_counter()
            response = await client.get(url)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            return 1

        requests_per_second = await rate(one_request, seconds, concurrency)
    return requests_per_second, latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target, alternating")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()

    with throwaway_stack() as (config, _):
        headers = bearer(config, "admin")
        targets = {
            "direct": f"{config.url('admin')}/api/v1/whoami",
            "gateway": f"{config.url('gateway')}/api/v1/whoami",
        }
        rates: dict[str, list[float]] = {name: [] for name in targets}
        latencies: dict[str, list[float]] = {name: [] for name in targets}
        for round_number in range(1, args.rounds + 1):
            for name, url in targets.items():
                rate, samples = asyncio.run(measure(url, headers, args.seconds, args.concurrency))
                rates[name].append(rate)
                latencies[name].extend(samples)
                print(f"round {round_number} {name:8s} {rate:8.0f} req/s", flush=True)
        print()
        print(f"{'target':8s} {'median req/s':>12s} {'p50 ms':>8s} {'p99 ms':>8s}")
        for name in targets:
            cuts = statistics.quantiles(latencies[name], n=100)
            print(
                f"{name:8s} {statistics.median(rates[name]):12.0f} "
                f"{cuts[49] * 1000:8.2f} {cuts[98] * 1000:8.2f}"
            )
        ratio = statistics.median(rates["gateway"]) / statistics.median(rates["direct"])
        print(f"\ngateway/direct throughput ratio: {ratio:.2f} (aim: >= 0.80)")


if __name__ == "__main__":
    main()
