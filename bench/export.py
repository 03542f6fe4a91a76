"""The export page and the ZIP export under load.

Starts a throw-away stack (embedded SecantusDB, as `make run`), loads it through the
gateway with telemetry (100k records by default, in batches of 1000) and vlogs
(1,000 small ones, plus ten of 100 MiB for the ZIP), then measures:
  - the time to render `/export` (median of several renders);
  - ZIP export of the large videos' participant (1 GiB of video) through the gateway,
    in MiB/s, against reading the same files from GridFS with PyMongo in the same run;
  - the gateway's peak resident memory during the ZIP export.

    .venv/bin/python bench/export.py [--records 100000] [--vlogs 1000] [--videos 10]
                                     [--video-mb 100]

With `--semester`, the TA's cockpit on a semester of one class instead (the data set
of bench/semester.py: 60 participants x 120 days, GPS every 10 minutes while awake,
and 2,000 vlogs): the median time of `/export` (target under 300 ms) and of one
participant's map page (as it opens, their newest two weeks: under 500 ms; and with
every day), next to plain reads in the same run: the participants' table API for the
page, the NDJSON stream of all that participant's fixes for the map.

    .venv/bin/python bench/export.py --semester [--participants 60] [--days 120]

With `--parquet`, the Parquet export of 1 M GPS fixes (50 participants) against the
NDJSON export of the same fixes in the same run: throughput of each, and the peak
resident memory of the gateway and of the ingest service during each (aim: each under
+150 MiB over idle); then the participant-day table of those fixes, and the ZIP of
everything against one NDJSON export plus one daily table (the ZIP reads each once).

    .venv/bin/python bench/export.py --parquet [--fixes 1000000]

With `--concurrent`, five ZIP and five Parquet exports of the same fixes asked at once,
as a class's TAs do before a deadline: the gateway's peak resident memory with its
export turns (EMOGO_GATEWAY_HEAVY_EXPORTS, 2 by default) against the same stack letting
all ten run at once, in the same run; an export answered 503 asks again after its
Retry-After, so all ten complete either way.

    .venv/bin/python bench/export.py --concurrent [--fixes 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from gridfs import AsyncGridFSBucket
from media import MiB, build_video, gateway_upload
from pymongo import AsyncMongoClient
from semester import semester_stack, timed, verdict
from support import bearer, throwaway_stack

from tests.support import PeakMemory

BATCH = 1000


async def load_telemetry(client: httpx.AsyncClient, records: int) -> None:
    sequence = itertools.count()

    async def one_batch(kind: str, size: int) -> None:
        rows = []
        for _ in range(size):
            n = next(sequence)
            common = {"user_id": f"P{n % 50:03d}", "timestamp": 1740000000 + n * 37}
            if kind == "sentiments":
                rows.append({**common, "emotion": ("happy", "calm", "sad", "anxious")[n % 4],
                             "intensity": (n % 100) / 100})  # fmt: skip
            else:
                rows.append({**common, "latitude": 25.0 + (n % 1000) / 1e5,
                             "longitude": 121.5 + (n % 700) / 1e5})  # fmt: skip
        response = await client.post(f"/api/{kind}/batch", json=rows)
        assert response.json()["stored"] == size, response.text

    half = records // 2
    for kind, total in (("sentiments", records - half), ("gps", half)):
        jobs = [one_batch(kind, min(BATCH, total - start)) for start in range(0, total, BATCH)]
        for chunk in range(0, len(jobs), 4):
            await asyncio.gather(*jobs[chunk : chunk + 4])


async def run(config, gateway_pid: int, folder: Path, args: argparse.Namespace) -> None:
    device = httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "device"), timeout=600
    )
    viewer = httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "viewer"), timeout=600
    )
    began = time.perf_counter()
    await load_telemetry(device, args.records)
    print(
        f"loaded {args.records} telemetry records in {time.perf_counter() - began:.0f} s",
        flush=True,
    )

    began = time.perf_counter()
    small = [folder / f"small-{n}.mp4" for n in range(args.vlogs)]
    for n, path in enumerate(small):
        build_video(path, 64 * 1024 + n)  # distinct bytes: no two are duplicates
    for chunk in range(0, len(small), 4):
        await asyncio.gather(
            *(
                gateway_upload(device, p, f"P{n % 50:03d}", f"Vlog {n}")
                for n, p in enumerate(small[chunk : chunk + 4], start=chunk)
            )
        )
    large = folder / "large.mp4"
    for n in range(args.videos):
        build_video(large, args.video_mb * MiB)
        await gateway_upload(device, large, "ZIPPER", f"Large {n}")
    large.unlink()
    print(f"uploaded {args.vlogs} small and {args.videos} large vlogs in "
          f"{time.perf_counter() - began:.0f} s\n", flush=True)  # fmt: skip

    renders = []
    for _ in range(5):
        started = time.perf_counter()
        page = await viewer.get("/export")
        assert page.status_code == 200
        renders.append(time.perf_counter() - started)
    print(f"/export render: median {statistics.median(renders) * 1000:.0f} ms "
          f"(min {min(renders) * 1000:.0f}, max {max(renders) * 1000:.0f})")  # fmt: skip

    with PeakMemory(gateway_pid) as memory:
        zip_path = "/api/export/everything.zip"
        received, zip_seconds = await download(viewer, zip_path, {"user_id": "ZIPPER"})

    mongo = AsyncMongoClient(config.mongodb_uri)
    bucket = AsyncGridFSBucket(mongo["emogo"], bucket_name="videos")
    vlogs = (await viewer.get("/api/vlogs", params={"user_id": "ZIPPER", "limit": 100})).json()
    started = time.perf_counter()
    raw = 0
    async for stored in mongo["emogo"]["vlogs"].find({"user_id": "ZIPPER"}):
        stream = await bucket.open_download_stream(stored["storage_id"])
        while piece := await stream.read(MiB):
            raw += len(piece)
    raw_seconds = time.perf_counter() - started
    await mongo.close()
    await device.aclose()
    await viewer.aclose()

    video_bytes = sum(v["file_size"] for v in vlogs)
    zip_rate = video_bytes / MiB / zip_seconds
    raw_rate = raw / MiB / raw_seconds
    print(f"ZIP export: {received / MiB:.0f} MiB in {zip_seconds:.1f} s, {zip_rate:.1f} MiB/s")
    print(f"raw GridFS read of the same videos: {raw / MiB:.0f} MiB, {raw_rate:.1f} MiB/s")
    print(f"ZIP/raw throughput: {zip_rate / raw_rate:.2f} (aim: >= 0.5)")
    print(f"gateway RSS during the ZIP: idle {memory.baseline / MiB:.0f} MiB, "
          f"peak {memory.peak / MiB:.0f} MiB (aim: < 150)")  # fmt: skip


async def load_fixes(client: httpx.AsyncClient, total: int) -> None:
    """`total` GPS fixes of 50 participants, a fix every 37 s, in batches of 1000."""

    async def one_batch(start: int, size: int) -> None:
        rows = [
            {
                "user_id": f"P{n % 50:03d}",
                "timestamp": 1740000000 + n * 37,
                "latitude": 25.0 + (n % 1000) / 1e5,
                "longitude": 121.5 + (n % 700) / 1e5,
                "accuracy": 5.0 + n % 20,
            }
            for n in range(start, start + size)
        ]
        response = await client.post("/api/gps/batch", json=rows)
        assert response.json()["stored"] == size, response.text

    starts = list(range(0, total, BATCH))
    for chunk in range(0, len(starts), 4):
        await asyncio.gather(
            *(one_batch(s, min(BATCH, total - s)) for s in starts[chunk : chunk + 4])
        )
        if chunk % 100 == 0:
            print(f"  {starts[chunk]} fixes sent", flush=True)


async def download(
    client: httpx.AsyncClient, path: str, params: dict[str, str] | None = None
) -> tuple[int, float]:
    """(bytes, seconds) of one streamed download, read as it arrives."""
    started = time.perf_counter()
    received = 0
    async with client.stream("GET", path, params=params) as response:
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            received += len(piece)
    return received, time.perf_counter() - started


async def parquet_run(config, pids: dict[str, int], fixes: int) -> None:
    device = httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "device"), timeout=600
    )
    viewer = httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "viewer"), timeout=3600
    )
    began = time.perf_counter()
    await load_fixes(device, fixes)
    print(f"loaded {fixes} GPS fixes in {time.perf_counter() - began:.0f} s\n", flush=True)
    rates = {}
    for form in ("ndjson", "parquet", "ndjson", "parquet"):
        with PeakMemory(pids["gateway"]) as gateway, PeakMemory(pids["ingest"]) as ingest:
            received, seconds = await download(viewer, f"/api/export/gps.{form}")
        rates.setdefault(form, []).append(fixes / seconds)
        print(
            f"gps.{form:<8} {received / MiB:7.1f} MiB in {seconds:6.1f} s, "
            f"{fixes / seconds:9.0f} fixes/s; RSS growth gateway "
            f"{gateway.growth / MiB:5.0f} MiB, ingest {ingest.growth / MiB:5.0f} MiB "
            f"(aim: < 150 each)",
            flush=True,
        )
    ratio = max(rates["parquet"]) / max(rates["ndjson"])
    print(f"\nParquet/NDJSON export rate (best of two each): {ratio:.2f}")
    # The participant-day table of the same fixes: every participant's read in time order.
    with PeakMemory(pids["gateway"]) as gateway, PeakMemory(pids["ingest"]) as ingest:
        started = time.perf_counter()
        answer = await viewer.get("/api/export/daily.parquet")
        assert answer.status_code == 200
        seconds = time.perf_counter() - started
    print(
        f"daily.parquet from {fixes} fixes: {seconds:.1f} s, {fixes / seconds:.0f} fixes/s; "
        f"RSS growth gateway {gateway.growth / MiB:.0f} MiB, ingest {ingest.growth / MiB:.0f} MiB"
    )
    # The ZIP holds the fixes as CSV, NDJSON and Parquet and the daily table twice, from
    # one read of each (services.gateway.exports.fanout): at best one NDJSON export plus one
    # daily table.
    one_read_each = fixes / max(rates["ndjson"]) + seconds
    with PeakMemory(pids["gateway"]) as gateway, PeakMemory(pids["ingest"]) as ingest:
        received, zip_seconds = await download(viewer, "/api/export/everything.zip")
    print(
        f"everything.zip {received / MiB:.1f} MiB in {zip_seconds:.1f} s, "
        f"{zip_seconds / one_read_each:.2f} of one NDJSON export and one daily table "
        f"({one_read_each:.1f} s; reading each of the five files apart would take about "
        f"3 NDJSON exports and 2 daily tables); RSS growth gateway "
        f"{gateway.growth / MiB:.0f} MiB, ingest {ingest.growth / MiB:.0f} MiB"
    )
    await device.aclose()
    await viewer.aclose()


async def concurrent_run(
    config, gateway_pid: int, fixes: int
) -> tuple[float, float, float, dict[int | str, int]]:
    """(idle RSS in MiB after one warm-up ZIP and Parquet export, peak RSS growth over
    it, seconds, statuses) for 5 ZIP and 5 Parquet exports asked at once."""
    async with httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "device"), timeout=600
    ) as device:
        await load_fixes(device, fixes)
    async with httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "viewer"), timeout=3600
    ) as viewer:
        statuses: dict[int | str, int] = {}

        async def until_done(path: str) -> None:
            while True:
                try:
                    async with viewer.stream("GET", path) as response:
                        if response.status_code == 503:
                            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                            continue
                        async for _ in response.aiter_raw():
                            pass
                        outcome: int | str = response.status_code
                except httpx.HTTPError as broken:  # a download cut off part-way
                    outcome = type(broken).__name__
                statuses[outcome] = statuses.get(outcome, 0) + 1
                return

        # Arrow's and the ZIP's one-time costs (library code, pools) are not growth.
        await until_done("/api/export/gps.parquet")
        await until_done("/api/export/everything.zip")
        statuses.clear()
        paths = ["/api/export/everything.zip"] * 5 + ["/api/export/gps.parquet"] * 5
        started = time.perf_counter()
        with PeakMemory(gateway_pid) as gateway:
            await asyncio.gather(*(until_done(path) for path in paths))
        seconds = time.perf_counter() - started
        return gateway.baseline / MiB, gateway.growth / MiB, seconds, statuses


CONCURRENT_RUNS = {"1": "one at a time", "2": "two at once (default)", "10": "all ten"}


def concurrent(fixes: int, runs: list[str]) -> None:
    measured = {}
    for turns in runs:
        label = CONCURRENT_RUNS[turns]
        with throwaway_stack(EMOGO_GATEWAY_HEAVY_EXPORTS=turns) as (config, supervisor):
            pid = supervisor.processes["gateway"].pid
            idle, growth, seconds, statuses = asyncio.run(concurrent_run(config, pid, fixes))
        measured[label] = growth
        print(
            f"{label:<22} gateway idle {idle:4.0f} MiB, peak growth {growth:5.0f} MiB, "
            f"ten exports in {seconds:6.1f} s, answers {statuses}",
            flush=True,
        )
    if {"two at once (default)", "all ten"} <= measured.keys():
        ratio = measured["two at once (default)"] / max(measured["all ten"], 1.0)
        print(f"\npeak growth with two turns / all ten at once: {ratio:.2f} (aim: < 150 MiB)")


def semester(participants: int, days: int, vlogs: int) -> None:
    with semester_stack(participants, days) as (config, _):
        gateway = config.url("gateway")
        began = time.perf_counter()
        with httpx.Client(base_url=gateway, headers=bearer(config, "device"), timeout=60) as phone:
            first = datetime.now(UTC) - timedelta(days=days)
            for n in range(vlogs):
                when = first + timedelta(days=n * days / vlogs, hours=20)
                answer = phone.post(
                    "/api/vlogs",
                    json={
                        "user_id": f"P{n % participants + 1:03d}",
                        "video_url": f"https://videos.example.org/{n}.mp4",
                        "title": f"Diary {n}",
                        "timestamp": when.isoformat(),
                    },
                )
                assert answer.status_code == 201, answer.text
        print(f"recorded {vlogs} vlogs in {time.perf_counter() - began:.0f} s", flush=True)
        with httpx.Client(
            base_url=gateway, headers=bearer(config, "viewer"), timeout=600
        ) as viewer:
            someone = viewer.get("/api/telemetry/participants", params={"limit": 1}).json()
            user_id = someone["participants"][0]["user_id"]
            fixes = viewer.get("/api/gps/count", params={"user_id": user_id}).json()["count"]
            rows = [
                ("/export (the cockpit)", "/export", {}, 0.300),
                (
                    "  reference: /api/telemetry/participants",
                    "/api/telemetry/participants",
                    {},
                    None,
                ),
                ("/api/telemetry/compliance", "/api/telemetry/compliance", {}, None),
                (f"map of {user_id}, newest two weeks", "/export/map", {"user_id": user_id}, 0.500),
                (
                    f"  every day ({fixes} fixes)",
                    "/export/map",
                    {"user_id": user_id, "days": 0},
                    None,
                ),
                (
                    "  reference: all their fixes as NDJSON",
                    "/api/gps/stream",
                    {"user_id": user_id},
                    None,
                ),
            ]
            measured = {}
            for label, path, params, target in rows:
                seconds = timed(viewer, path, params, runs=7)
                measured[(path, params.get("days"))] = seconds
                note = (
                    f"  (target {target * 1000:.0f} ms: {verdict(seconds < target)})"
                    if target
                    else ""
                )
                print(f"{label:<48}{seconds * 1000:8.1f} ms{note}", flush=True)
            page = measured[("/export", None)] / measured[("/api/telemetry/participants", None)]
            track = measured[("/export/map", 0)] / measured[("/api/gps/stream", None)]
            print(
                f"/export is {page:.1f}x the participants' table; "
                f"the map of every day {track:.2f}x the stream of those fixes",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="telemetry records")
    parser.add_argument("--vlogs", type=int, default=1000, help="small vlogs")
    parser.add_argument("--videos", type=int, default=10, help="large videos for the ZIP")
    parser.add_argument("--video-mb", type=int, default=100, help="size of each large video")
    parser.add_argument("--semester", action="store_true", help="the cockpit on a semester")
    parser.add_argument("--participants", type=int, default=60, help="with --semester")
    parser.add_argument("--days", type=int, default=120, help="with --semester")
    parser.add_argument("--parquet", action="store_true", help="Parquet against NDJSON")
    parser.add_argument("--fixes", type=int, default=None, help="with --parquet, --concurrent")
    parser.add_argument("--concurrent", action="store_true", help="ten large exports at once")
    parser.add_argument(
        "--turns", nargs="*", default=list(CONCURRENT_RUNS), help="with --concurrent: 1 2 10"
    )
    args = parser.parse_args()
    if args.concurrent:
        concurrent(args.fixes or 200_000, args.turns)
        return
    if args.parquet:
        with throwaway_stack() as (config, supervisor):
            pids = {name: supervisor.processes[name].pid for name in ("gateway", "ingest")}
            asyncio.run(parquet_run(config, pids, args.fixes or 1_000_000))
        return
    if args.semester:
        semester(args.participants, args.days, vlogs=2000)
        return
    with tempfile.TemporaryDirectory(prefix="emogo-bench-export-") as folder:
        limit = str((args.video_mb + 64) * MiB)
        with throwaway_stack(EMOGO_MEDIA_MAX_UPLOAD_BYTES=limit) as (config, supervisor):
            asyncio.run(run(config, supervisor.processes["gateway"].pid, Path(folder), args))


if __name__ == "__main__":
    main()
