"""Reads on a semester of one class, on the embedded database, through the gateway.

Stores the data set `python -m generators telemetry --participants 60 --days 120`
sends (about 720 k records, GPS every 10 minutes) straight into a fresh SecantusDB,
made by the ingest service's own record conversion (sending it through the gateway
takes about five minutes and measures nothing here); starts the stack on it, waits
until the daily rollups are counted, then times (median of several) what a TA and
an analysis script do, against the targets:

  /export (the TA's page)                         under 300 ms
  GET /api/gps?limit=100 (no filter)              under 100 ms
  a participant's newest 100 GPS fixes            under 50 ms
  a study's newest 100 GPS fixes (--studies 10)   under 50 ms
  a cursor walk of ~100 k fixes                   under 3x the NDJSON stream of the same
  gps.csv (every fix)                             at least 0.8 of the NDJSON stream's rate

    .venv/bin/python bench/semester.py [--participants 60] [--days 120] [--studies 10]

With --studies N the participants are spread over N studies (as N classes), and a
study's list is timed beside the unfiltered one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from beanie import init_beanie
from pymongo import AsyncMongoClient, MongoClient
from support import bearer, embedded_database, throwaway_stack

from generators.telemetry import dataset
from services.common.web.timestamps import stored_now
from services.common.web.validation import convert_record
from services.ingest.kinds import GPS_FIXES, SENTIMENTS
from services.ingest.models import DOCUMENTS
from services.ingest.services import to_document
from tests.support import wait_until

DB_NAME = "emogo"


async def create_indexes(uri: str) -> None:
    """The ingest service's indexes, made on the empty collections: kept up while
    loading costs less than building them over 700 k records afterwards."""
    client: AsyncMongoClient = AsyncMongoClient(uri)
    await init_beanie(database=client[DB_NAME], document_models=DOCUMENTS)
    await client.close()


def study_of(studies: int) -> Callable[[str], str | None]:
    """Each participant's study, in turn, when there are several (None: no study)."""
    seen: dict[str, str | None] = {}

    def study(user_id: str) -> str | None:
        if user_id not in seen:
            seen[user_id] = f"study-{len(seen) % studies + 1:02d}" if studies > 1 else None
        return seen[user_id]

    return study


def load(uri: str, participants: int, days: int, studies: int = 1) -> tuple[int, int]:
    asyncio.run(create_indexes(uri))
    start = datetime.now(UTC).date() - timedelta(days=days)
    moods, fixes = dataset(participants, days, 1, start)
    now = stored_now()
    study = study_of(studies)
    database = MongoClient(uri)[DB_NAME]
    for kind, records in ((SENTIMENTS, moods), (GPS_FIXES, fixes)):
        collection = database[kind.document.Settings.name]
        for first in range(0, len(records), 10_000):
            documents = [
                to_document(kind, convert_record(record, kind.record_in), now, timedelta(days=1))
                for record in records[first : first + 10_000]
            ]
            for document in documents:
                if (found := study(document["user_id"])) is not None:
                    document["study_id"] = found
            collection.insert_many(documents, ordered=False)
    return len(moods), len(fixes)


def timed(client: httpx.Client, path: str, params: dict | None = None, runs: int = 5) -> float:
    """Median seconds of `runs` GETs (after one to warm up)."""
    client.get(path, params=params).raise_for_status()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def walk(client: httpx.Client, params: dict) -> tuple[int, float]:
    began, records, cursor = time.perf_counter(), 0, None
    while True:
        page = client.get("/api/gps", params={**params, "cursor": cursor} if cursor else params)
        page.raise_for_status()
        records += len(page.json())
        cursor = page.headers.get("x-next-cursor")
        if not cursor:
            return records, time.perf_counter() - began


def download(client: httpx.Client, path: str, params: dict | None = None) -> tuple[int, float]:
    began, lines = time.perf_counter(), 0
    with client.stream("GET", path, params=params) as response:
        response.raise_for_status()
        for piece in response.iter_bytes():
            lines += piece.count(b"\n")
    return lines, time.perf_counter() - began


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def measure(
    gateway: str, headers: dict[str, str], participants: int, days: int, studies: int = 1
) -> None:
    with httpx.Client(base_url=gateway, headers=headers, timeout=600) as viewer:
        someone = viewer.get("/api/telemetry/participants", params={"limit": 1}).json()
        user_id = someone["participants"][0]["user_id"]
        rows = [
            ("/export", timed(viewer, "/export"), 0.300),
            ("GET /api/gps?limit=100", timed(viewer, "/api/gps", {"limit": 100}), 0.100),
            (
                "a participant's newest 100 fixes",
                timed(viewer, "/api/gps", {"user_id": user_id, "limit": 100}),
                0.050,
            ),
            *(
                [
                    (
                        "a study's newest 100 fixes",
                        timed(viewer, "/api/gps", {"study_id": "study-01", "limit": 100}),
                        0.050,
                    )
                ]
                if studies > 1
                else []
            ),
            ("/api/telemetry/summary", timed(viewer, "/api/telemetry/summary"), None),
            (
                "/api/telemetry/participants?limit=25",
                timed(viewer, "/api/telemetry/participants", {"limit": 25}),
                None,
            ),
        ]
        for label, seconds, target in rows:
            note = (
                f"  (target {target * 1000:.0f} ms: {verdict(seconds < target)})" if target else ""
            )
            print(f"{label:<40}{seconds * 1000:8.1f} ms{note}", flush=True)

        # About 100 k fixes: the last days of the semester, oldest first.
        per_day = participants * 144
        span = {
            "since": (datetime.now(UTC) - timedelta(days=100_000 // per_day + 2)).date().isoformat()
        }
        streamed, stream_seconds = download(viewer, "/api/gps/stream", span)
        walked, walk_seconds = walk(viewer, {**span, "order": "asc", "limit": 1000})
        ratio = walk_seconds / stream_seconds
        print(
            f"cursor walk of {walked} fixes (pages of 1000): {walk_seconds:.2f} s, "
            f"{ratio:.2f}x the NDJSON stream of the same ({streamed} in {stream_seconds:.2f} s)"
            f"  (target under 3x: {verdict(ratio < 3 and walked == streamed)})",
            flush=True,
        )
        rows_csv, csv_seconds = download(viewer, "/api/export/gps.csv")
        lines, ndjson_seconds = download(viewer, "/api/gps/stream")
        rate = (rows_csv - 1) / csv_seconds / (lines / ndjson_seconds)
        print(
            f"gps.csv: {rows_csv - 1} rows in {csv_seconds:.1f} s; NDJSON stream: {lines} in "
            f"{ndjson_seconds:.1f} s; CSV rate {rate:.2f} of NDJSON's"
            f"  (target at least 0.8: {verdict(rate >= 0.8)})",
            flush=True,
        )


@contextmanager
def semester_stack(participants: int, days: int, studies: int = 1) -> Iterator[tuple[Any, str]]:
    """A stack on a fresh embedded database holding the semester's telemetry, with its
    rollups counted: yields the stack's config and the database URI."""
    with embedded_database() as (uri, _):
        began = time.perf_counter()
        moods, fixes = load(uri, participants, days, studies)
        print(
            f"stored {moods} sentiments and {fixes} GPS fixes in "
            f"{time.perf_counter() - began:.0f} s",
            flush=True,
        )
        began = time.perf_counter()
        with throwaway_stack(uri, DB_NAME=DB_NAME, EMOGO_LOG_LEVEL="INFO") as (config, _):
            state = MongoClient(uri)[DB_NAME]["telemetry_daily_state"]

            def counted() -> bool:
                found = state.find_one({"_id": "rollups"})
                return bool(found and found.get("folded_before"))

            wait_until(counted, 1800, "the rollups to be counted")
            print(
                f"indexes built and rollups counted in {time.perf_counter() - began:.0f} s",
                flush=True,
            )
            yield config, uri


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=60)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--studies", type=int, default=1, help="studies the class is spread over")
    args = parser.parse_args()
    with semester_stack(args.participants, args.days, args.studies) as (config, _):
        measure(
            config.url("gateway"),
            bearer(config, "viewer"),
            args.participants,
            args.days,
            args.studies,
        )


if __name__ == "__main__":
    main()
