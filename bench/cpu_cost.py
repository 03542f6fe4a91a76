"""CPU milliseconds per request, per process, with the settings `make run` uses.

Starts a throw-away stack (embedded SecantusDB, one worker per service, logging at
INFO as by default) and the reference apps of `reference_apps.py` on the same
database (a minimal Litestar app, the seed on Motor and on PyMongo async, and the
floor: a bare relay before a bare service), then sends each kind of request at
concurrency 16 and reads each process's CPU time (user + system, from
/proc/<pid>/stat) before and after:

  - a single sentiment (POST /api/sentiments), with the device token and with the
    tokens of 16 enrolled phones, each its own participant (`PHONES`),
  - a batch of 500 sentiments (POST /api/sentiments/batch),
  - a list page (GET /api/sentiments?limit=100),
  - a 10 MB video download (GET /api/vlogs/{id}/download),
  - the export page (GET /export), once the rollups have folded the records sent,

through the gateway, and the first and third straight to the references (single
posts through the floor's relay). The
database's CPU is its own column: SecantusDB is written in Python and costs far
more than MongoDB would, so compare the other columns. The CPU of a process is
independent of how fast the machine happens to be at the moment, so these numbers
carry better than rates; the ratios to the references are what to read.

    .venv/bin/python bench/cpu_cost.py [--requests 2000] [--concurrency 16] [--posts-only]
                                       [--alternate BLOCKS] [--tree PATH]

`--tree` measures the stack of another checkout (the references are this one's).

Measured one after the other, the apps each meet the host's load of their moment;
`--alternate` then also sends single posts in alternating blocks to EmoGo's pair,
the seed and the floor, all running at once and started alike (an ingest and a
gateway of EmoGo beside the stack, as `cpu_versus.py` starts them), and prints the
median of the per-block ratios: the pair against the seed as it holds on a noisy host.
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
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from media import MiB, build_video, gateway_upload
from support import bearer, started_pair, throwaway_stack

from tests.support import free_port, http_ok, wait_until

TICKS = os.sysconf("SC_CLK_TCK")
# The database the reference apps store in, beside EmoGo's on the same server.
REFERENCE_DB = "emogo_bench_reference"
HERE = Path(__file__).resolve().parent
# Sends request number n and returns the answer.
MakeRequest = Callable[[int], Coroutine[Any, Any, httpx.Response]]
# Phones with a participant token each, posting at once (one post in flight each).
PHONES = 16


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
    make_request: MakeRequest,
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
    make_request: MakeRequest,
    count: int,
    concurrency: int,
    expected: int = 200,
) -> dict[str, float]:
    """CPU milliseconds per request for each process."""
    print(f"  measuring {label} ...", file=sys.stderr, flush=True)
    # Warm up (first calls, connection pools, the first folds after start) so that
    # the figure is the steady cost per request.
    await drive(make_request, min(count, max(50, count // 5)), concurrency, expected)
    return await cpu_per_request(pids, make_request, count, concurrency, expected)


async def cpu_per_request(
    pids: dict[str, int],
    make_request: MakeRequest,
    count: int,
    concurrency: int,
    expected: int,
) -> dict[str, float]:
    """CPU milliseconds per request for each process, around `count` requests."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await drive(make_request, count, concurrency, expected)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return {name: (after[name] - before[name]) * 1000 / count for name in pids}


async def alternating_blocks(
    sides: dict[str, tuple[dict[str, int], MakeRequest]],
    blocks: int,
    count: int,
    concurrency: int,
    expected: int,
) -> AsyncIterator[dict[str, dict[str, float]]]:
    """Each block: `count` requests to every side in turn (the pids whose CPU it
    reads, and how to send a request), each block begun by the next side. The load of
    these hosts moves by a third within minutes; sides measured in the same block
    share it, so the ratios within a block hold where the absolute figures do not."""
    labels = list(sides)
    for number in range(blocks):
        start = number % len(labels)
        block = {}
        for label in labels[start:] + labels[:start]:
            pids, make_request = sides[label]
            block[label] = await cpu_per_request(pids, make_request, count, concurrency, expected)
        yield block


def median_and_range(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f}  ({min(values):.3f}-{max(values):.3f})"


async def enrolled_phones(client: httpx.AsyncClient, admin: dict[str, str]) -> list[dict]:
    """PHONES participants of a new study, each enrolled with its own token: their
    Authorization headers and ids."""
    study = f"cpu-{time.time_ns()}"
    created = await client.post(
        "/api/studies", json={"study_id": study, "name": study}, headers=admin
    )
    assert created.status_code == 201, created.text
    issued = await client.post(
        f"/api/studies/{study}/participants", json={"count": PHONES}, headers=admin
    )
    assert issued.status_code == 201, issued.text
    phones = []
    for person in issued.json()["participants"]:
        answer = await client.post(
            "/api/enrol", json={"study_id": study, "code": person["code"]}, headers={}
        )
        assert answer.status_code in (200, 201), answer.text
        phones.append(
            {"user_id": person["user_id"], "Authorization": f"Bearer {answer.json()['token']}"}
        )
    return phones


def phone_posts(client: httpx.AsyncClient, phones: list[dict]) -> MakeRequest:
    """Request n comes from phone n % PHONES, as its own participant."""

    def post(n: int) -> Coroutine[Any, Any, httpx.Response]:
        phone = phones[n % len(phones)]
        body = {**sentiment(n), "user_id": phone["user_id"]}
        return client.post(
            "/api/sentiments", json=body, headers={"Authorization": phone["Authorization"]}
        )

    return post


def single_posts(client: httpx.AsyncClient) -> MakeRequest:
    return lambda i: client.post("/api/sentiments", json=sentiment(i))


def sentiment(n: int) -> dict:
    """Reported over the last week, as a class's phones would (a list page then reads
    a realistic stretch of time, not thousands of records of the same second)."""
    at = time.time() - (n * 7919) % (7 * 86400)
    return {"user_id": f"P{n % 60:03d}", "emotion": "happy", "intensity": 0.5, "timestamp": at}


@contextmanager
def reference(kind: str, *where: str) -> Iterator[tuple[int, str]]:
    """(pid, URL) of a reference app of `reference_apps.py` on a free port while the
    block runs; `where` is its database (URI and name) or, for the bare relay, the URL
    it relays to."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "reference_apps.py"), kind, str(port), *where],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(http_ok(f"{url}/api/sentiments"), 30, f"the {kind} reference app")
        yield process.pid, url
    finally:
        process.terminate()
        process.wait(10)


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
    print(f"{'CPU ms per request':<46}" + "".join(f"{c:>8}" for c in columns) + f"{'sum':>8}")

    def through(service: str) -> dict[str, int]:
        return {"gateway": pid["gateway"], "service": pid[service], "database": pid["database"]}

    n = args.requests
    results: dict[str, dict[str, float]] = {}
    results["single post"] = await measure(
        "single post",
        through("ingest"),
        lambda i: device.post("/api/sentiments", json=sentiment(i)),
        n,
        args.concurrency,
        201,
    )
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=600) as anyone:
        phones = await enrolled_phones(anyone, bearer(config, "admin"))
        results["single post, participant tokens"] = await measure(
            "single post, participant tokens",
            through("ingest"),
            phone_posts(anyone, phones),
            n,
            min(args.concurrency, PHONES),
            201,
        )
    if not args.posts_only:
        results.update(await measure_the_rest(device, viewer, through, pid, args))
    for label, costs in results.items():
        print(row(f"EmoGo: {label}", costs, columns), flush=True)

    references = (
        ("minimal", "minimal Litestar"),
        ("seed-motor", "the seed (FastAPI + Motor)"),
        ("seed", "the seed on PyMongo async"),
    )
    for kind, title in references:
        with reference(kind, config.mongodb_uri, REFERENCE_DB) as (service_pid, url):
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as direct:
                pids = {"service": service_pid, "database": pid["database"]}
                single = await measure(
                    f"{kind} single post",
                    pids,
                    lambda i: direct.post("/api/sentiments", json=sentiment(i)),
                    n,
                    args.concurrency,
                    201,
                )
                print(row(f"{title}: single post", single, columns), flush=True)
                if not args.posts_only:
                    listing = await measure(
                        f"{kind} list page",
                        pids,
                        lambda i: direct.get("/api/sentiments"),
                        max(50, n // 4),
                        args.concurrency,
                    )
                    print(row(f"{title}: list page of 100", listing, columns), flush=True)
            results[f"{kind} single"] = single

    floor = await measure_floor(config.mongodb_uri, pid["database"], args, limits)
    print(row("floor: a bare relay + a bare service", floor, columns), flush=True)

    ours = results["single post"]
    pair = ours["gateway"] + ours["service"]
    floor_pair = floor["gateway"] + floor["service"]
    for label in ("single post", "single post, participant tokens"):
        costs = results[label]
        print(f"\n{label}: gateway + ingest {costs['gateway'] + costs['service']:.2f} ms", end="")
        for kind, title in references[1:]:
            seed = results[f"{kind} single"]["service"]
            ratio = (costs["gateway"] + costs["service"]) / seed
            print(f"; against {title} {seed:.2f} ms (ratio {ratio:.2f})", end="")
    print(f"\ningest alone {ours['service'] / results['minimal single']['service']:.1f}x minimal")
    seed = results["seed-motor single"]["service"]
    print(
        f"the floor of any two processes: {floor_pair:.2f} ms, {floor_pair / seed:.2f} of the "
        f"seed; EmoGo's pair is {pair / floor_pair:.2f} of that floor"
    )
    if args.alternate:
        await alternate_with_the_seed(config, args, limits)
    await device.aclose()
    await viewer.aclose()


async def alternate_with_the_seed(
    config: Any, args: argparse.Namespace, limits: httpx.Limits
) -> None:
    """Single posts in alternating blocks: an ingest and a gateway of EmoGo, the seed
    (Motor) and the floor, all running beside each other on the same database and
    started alike (`started_pair`). What the ratio of the pair to the seed is, measured
    the way that holds on a noisy host."""
    uri = config.mongodb_uri
    with (
        started_pair(config, HERE.parent, "emogo_bench_alternate") as (pair_pids, pair_url),
        reference("seed-motor", uri, REFERENCE_DB) as (seed_pid, seed_url),
        reference("bare-ingest", uri, REFERENCE_DB) as (bare_pid, bare_url),
        reference("bare-relay", bare_url) as (relay_pid, relay_url),
    ):
        async with (
            httpx.AsyncClient(
                base_url=pair_url, headers=bearer(config, "device"), limits=limits, timeout=600
            ) as device,
            httpx.AsyncClient(base_url=seed_url, limits=limits, timeout=600) as seed,
            httpx.AsyncClient(base_url=relay_url, limits=limits, timeout=600) as relay,
        ):
            sides = {
                "EmoGo": (
                    {"gateway": pair_pids["gateway"], "service": pair_pids["ingest"]},
                    single_posts(device),
                ),
                "seed": ({"service": seed_pid}, single_posts(seed)),
                "floor": ({"gateway": relay_pid, "service": bare_pid}, single_posts(relay)),
            }
            for _, make_request in sides.values():  # warm-up
                await drive(make_request, 800, args.concurrency, 201)
            print(f"\nsingle posts in alternating blocks of {args.requests}, CPU ms per post:")
            print(f"{'block':<7}" + "".join(f"{label:>9}" for label in sides))
            ratios: dict[str, list[float]] = {"EmoGo/seed": [], "floor/seed": [], "EmoGo/floor": []}
            number = 0
            async for block in alternating_blocks(
                sides, args.alternate, args.requests, args.concurrency, 201
            ):
                number += 1
                total = {label: sum(costs.values()) for label, costs in block.items()}
                print(f"{number:<7}" + "".join(f"{total[label]:9.3f}" for label in sides))
                ratios["EmoGo/seed"].append(total["EmoGo"] / total["seed"])
                ratios["floor/seed"].append(total["floor"] / total["seed"])
                ratios["EmoGo/floor"].append(total["EmoGo"] / total["floor"])
            print(f"median of {args.alternate} blocks (min-max):")
            for name, values in ratios.items():
                print(f"  {name:<12}{median_and_range(values)}")


async def measure_floor(
    uri: str, database_pid: int, args: argparse.Namespace, limits: httpx.Limits
) -> dict[str, float]:
    """Single posts through the bare relay to the bare service: no framework, no
    checks, no logging, the same database and group commit."""
    with (
        reference("bare-ingest", uri, REFERENCE_DB) as (service_pid, service_url),
        reference("bare-relay", service_url) as (relay_pid, relay_url),
    ):
        async with httpx.AsyncClient(base_url=relay_url, limits=limits, timeout=600) as client:
            return await measure(
                "bare relay + bare service single post",
                {"gateway": relay_pid, "service": service_pid, "database": database_pid},
                lambda i: client.post("/api/sentiments", json=sentiment(i)),
                args.requests,
                args.concurrency,
                201,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="single posts to send")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument(
        "--posts-only", action="store_true", help="single posts only (ours, references, floor)"
    )
    parser.add_argument(
        "--alternate",
        type=int,
        default=0,
        metavar="BLOCKS",
        help="then single posts in this many alternating blocks: EmoGo, the seed, the floor",
    )
    parser.add_argument("--tree", type=Path, help="measure the stack of this checkout")
    args = parser.parse_args()
    began = time.perf_counter()
    tree = {"PYTHONPATH": str(args.tree.resolve())} if args.tree else {}
    with throwaway_stack(EMOGO_LOG_LEVEL="INFO", **tree) as (config, supervisor):
        asyncio.run(run(config, supervisor, args))
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
