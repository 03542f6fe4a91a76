"""CPU milliseconds per request, per process, with the settings `make run` uses.

Starts a throw-away stack (embedded SecantusDB, one worker per service, logging at
INFO as by default) and the reference apps of `reference_apps.py` on the same
database (a minimal Litestar app, the seed on Motor and on PyMongo async, and the
floor: a bare relay before a bare service), then sends each kind of request at
concurrency 16 and reads each process's CPU time (user + system, from
/proc/<pid>/stat) before and after:

  - a single sentiment (POST /api/sentiments),
  - a batch of 500 sentiments (POST /api/sentiments/batch),
  - a list page (GET /api/sentiments?limit=100),
  - a 10 MB video download (GET /api/vlogs/{id}/download),
  - the export page (GET /export), once the rollups have folded the records sent,

through the gateway, and the first and third straight to the references (single
posts through the floor's relay). The database's CPU is its own column: SecantusDB is
written in Python and costs far more than MongoDB would, so compare the other columns.

CPU per request carries better than rates, but it still moves with the host's load
(on one day the same reference measured 0.70 to 1.30 ms a post from run to run). So
single posts go in rounds that take turns between EmoGo and every reference
(`--rounds`, 3 by default), each ratio is taken within a round, and the median of the
rounds is printed: read the ratios.

    .venv/bin/python bench/cpu_cost.py [--requests 2000] [--rounds 3] [--posts-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from media import MiB, build_video, gateway_upload
from support import bearer, throwaway_stack

from tests.support import free_port, http_ok, wait_until

TICKS = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its children that have exited and been
    waited for, plus its live children (the workers of a service)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        pass
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


async def drive(
    make_request: Callable[[int], Coroutine[Any, Any, httpx.Response]],
    count: int,
    concurrency: int,
    expected: int,
) -> None:
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            response = await make_request(n)
            if response.status_code != expected:
                raise SystemExit(f"answered {response.status_code}: {response.text[:300]}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(
    label: str,
    pids: dict[str, int],
    make_request: Callable[[int], Coroutine[Any, Any, httpx.Response]],
    count: int,
    concurrency: int,
    expected: int = 200,
) -> dict[str, float]:
    """CPU milliseconds per request for each process."""
    print(f"  measuring {label} ...", file=sys.stderr, flush=True)
    # Warm up (first calls, connection pools, the first folds after start) so that
    # the figure is the steady cost per request.
    await drive(make_request, min(count, max(50, count // 5)), concurrency, expected)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await drive(make_request, count, concurrency, expected)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return {name: (after[name] - before[name]) * 1000 / count for name in pids}


def sentiment(n: int) -> dict:
    """Reported over the last week, as a class's phones would (a list page then reads
    a realistic stretch of time, not thousands of records of the same second)."""
    at = time.time() - (n * 7919) % (7 * 86400)
    return {"user_id": f"P{n % 60:03d}", "emotion": "happy", "intensity": 0.5, "timestamp": at}


def start_reference(kind: str, *where: str) -> tuple[subprocess.Popen, str]:
    """A reference app of `reference_apps.py` on a free port; `where` is its database
    (URI and name) or, for the bare relay, the URL it relays to."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "reference_apps.py"), kind, str(port), *where],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{url}/api/sentiments"), 30, f"the {kind} reference app")
    return process, url


def row(label: str, costs: dict[str, float], columns: list[str]) -> str:
    cells = [f"{costs[c]:8.2f}" if c in costs else f"{'':>8}" for c in columns]
    return f"{label:<46}" + "".join(cells) + f"{sum(costs.values()):8.2f}"


async def measure_the_rest(
    device: httpx.AsyncClient,
    viewer: httpx.AsyncClient,
    through: Callable[[str], dict[str, int]],
    pid: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """A batch, a list page, a download and the export page, through the gateway."""
    n = args.requests
    results: dict[str, dict[str, float]] = {}
    batch = [sentiment(i) for i in range(500)]
    results["batch of 500 (per batch)"] = await measure(
        "batch",
        through("ingest"),
        lambda i: device.post("/api/sentiments/batch", json=batch),
        max(10, n // 100),
        4,
    )
    # Reads are measured once the rollups have folded the records just sent (they
    # fold what is older than twice the database deadline); otherwise the database
    # column would carry that background work too.
    await asyncio.sleep(12)
    results["list page of 100"] = await measure(
        "list page",
        through("ingest"),
        lambda i: viewer.get("/api/sentiments", params={"limit": 100}),
        max(50, n // 4),
        args.concurrency,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ten.mp4"
        build_video(path, 10 * MiB)
        _, vlog_id = await gateway_upload(device, path, "P001")
    results["10 MB video download"] = await measure(
        "download",
        through("media"),
        lambda i: viewer.get(f"/api/vlogs/{vlog_id}/download"),
        max(10, n // 100),
        4,
    )
    export_pids = {
        "gateway": pid["gateway"],
        "ingest": pid["ingest"],
        "media": pid["media"],
        "database": pid["database"],
    }
    export = await measure(
        "export page", export_pids, lambda i: viewer.get("/export"), max(10, n // 100), 4
    )
    results["export page"] = {
        "gateway": export["gateway"],
        "service": export["ingest"] + export["media"],
        "database": export["database"],
    }
    return results


REFERENCES = (
    ("minimal", "minimal Litestar"),
    ("seed-motor", "the seed (FastAPI + Motor)"),
    ("seed", "the seed on PyMongo async"),
)


@dataclass
class Target:
    """Where single posts go, and the processes whose CPU they cost."""

    title: str
    client: httpx.AsyncClient
    pids: dict[str, int]


async def run(config: Any, supervisor: Any, args: argparse.Namespace) -> None:
    pid = {name: process.pid for name, process in supervisor.processes.items()}
    gateway = config.url("gateway")
    limits = httpx.Limits(max_connections=args.concurrency)
    device = httpx.AsyncClient(
        base_url=gateway, headers=bearer(config, "device"), limits=limits, timeout=600
    )
    viewer = httpx.AsyncClient(
        base_url=gateway, headers=bearer(config, "viewer"), limits=limits, timeout=600
    )
    columns = ["gateway", "service", "database"]

    def through(service: str) -> dict[str, int]:
        return {"gateway": pid["gateway"], "service": pid[service], "database": pid["database"]}

    def client_of(base: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base, limits=limits, timeout=600)

    with ExitStack() as running:
        # Every reference runs from the start, idle but in its own turn, so that the
        # rounds below take turns: the host's load changes over minutes, and a ratio
        # means something only when both sides saw the same load.
        database = config.mongodb_uri, "emogo_bench_reference"
        targets = {"EmoGo": Target("EmoGo", device, through("ingest"))}
        for kind, title in REFERENCES:
            app = running.enter_context(reference(kind, *database))
            targets[kind] = Target(
                title, client_of(app.base), {"service": app.pid, "database": pid["database"]}
            )
        service = running.enter_context(reference("bare-ingest", *database))
        relay = running.enter_context(reference("bare-relay", service.base))
        targets["floor"] = Target(
            "floor: a bare relay + a bare service",
            client_of(relay.base),
            {"gateway": relay.pid, "service": service.pid, "database": pid["database"]},
        )
        rounds = await single_post_rounds(targets, args)
        print_rounds(targets, rounds, columns, args.rounds)
        if not args.posts_only:
            print(
                f"\n{'CPU ms per request':<46}"
                + "".join(f"{c:>8}" for c in columns)
                + f"{'sum':>8}"
            )
            for label, costs in (
                await measure_the_rest(device, viewer, through, pid, args)
            ).items():
                print(row(f"EmoGo: {label}", costs, columns), flush=True)
            for kind, title in REFERENCES:
                target = targets[kind]
                listing = await measure(
                    f"{kind} list page",
                    target.pids,
                    lambda i, client=target.client: client.get("/api/sentiments"),
                    max(50, args.requests // 4),
                    args.concurrency,
                )
                print(row(f"{title}: list page of 100", listing, columns), flush=True)
        for target in targets.values():
            await target.client.aclose()
    await viewer.aclose()


async def single_post_rounds(
    targets: dict[str, Target], args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    """Each round sends single posts to every target in turn."""
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for number in range(args.rounds):
        for name, target in targets.items():
            rounds[name].append(
                await measure(
                    f"round {number + 1}: {name} single post",
                    target.pids,
                    lambda i, client=target.client: client.post(
                        "/api/sentiments", json=sentiment(i)
                    ),
                    args.requests,
                    args.concurrency,
                    201,
                )
            )
    return rounds


def print_rounds(
    targets: dict[str, Target],
    rounds: dict[str, list[dict[str, float]]],
    columns: list[str],
    count: int,
) -> None:
    print(f"single posts, {count} rounds taking turns: median (lowest-highest)")
    print(f"{'CPU ms per request':<52}" + "".join(f"{c:>18}" for c in columns))
    for name, target in targets.items():
        cells = []
        for column in columns:
            values = [costs[column] for costs in rounds[name] if column in costs]
            cells.append(
                f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
                if values
                else ""
            )
        print(f"{target.title + ': single post':<52}" + "".join(f"{c:>18}" for c in cells))

    def pairs(name: str) -> list[float]:
        return [costs["gateway"] + costs["service"] for costs in rounds[name]]

    def services(name: str) -> list[float]:
        return [costs["service"] for costs in rounds[name]]

    print("\nratios, round by round, and their median:")
    for kind, title in REFERENCES[1:]:
        print(ratios(f"gateway + ingest / {title}", pairs("EmoGo"), services(kind)))
    print(ratios("the floor / the seed (FastAPI + Motor)", pairs("floor"), services("seed-motor")))
    print(ratios("gateway + ingest / the floor", pairs("EmoGo"), pairs("floor")))
    print(ratios("ingest / minimal Litestar", services("EmoGo"), services("minimal")), flush=True)


def ratios(label: str, numerators: list[float], denominators: list[float]) -> str:
    each = [a / b for a, b in zip(numerators, denominators, strict=True)]
    listed = ", ".join(f"{r:.2f}" for r in each)
    return f"  {label:<44} {listed}; median {statistics.median(each):.2f}"


@dataclass
class Running:
    base: str
    pid: int


@contextmanager
def reference(kind: str, *where: str) -> Iterator[Running]:
    """A reference app of `reference_apps.py` on a free port while the block runs;
    `where` is its database (URI and name) or, for the bare relay, the URL it relays to."""
    process, url = start_reference(kind, *where)
    try:
        yield Running(url, process.pid)
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="single posts to send")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of single posts")
    parser.add_argument(
        "--posts-only", action="store_true", help="single posts only (ours, references, floor)"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    with throwaway_stack(EMOGO_LOG_LEVEL="INFO") as (config, supervisor):
        asyncio.run(run(config, supervisor, args))
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
