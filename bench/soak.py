"""Soak: whole classes of phones on one machine, as a department would run them.

Starts a throw-away stack exactly as `make run` does (embedded SecantusDB, default
settings) and, per class, a study of 60 participants, each enrolled with its own
token (POST /api/enrol, as phones do), then for `--minutes`:

  - each phone posts a single sentiment about every 20 s and a batch of 10 GPS fixes
    about every 30 s, each record with its own client id;
  - one phone of the class uploads a fresh 5-10 MB MP4 every 20 s, every third
    through tus, the others as the raw body;
  - the class's TA (a viewer token of the study) loads `/export?study_id=...` every
    30 s and lists the study's newest 100 GPS fixes every 10 s;
  - with `--storm`, midway, every phone of the first class sends two days of queued
    GPS fixes (one a minute) and sentiments at once, in batches of 1,000 (the most a
    batch may carry), while everything else goes on.

Phones do what the API asks of them: a 503 or 429 is sent again after its
Retry-After, with the same client ids. Printed afterwards: per kind of request the
count, status counts and p50/p99/p99.9/max latency; every stall (a second or more
during which writes were waiting and none was answered) with its start and length;
records confirmed (2xx, or 409 for a single post already stored) but missing in the
database, and records stored more than once (both by client id; vlogs by id and
sha256); the resident memory of every process at the start and the end.

    .venv/bin/python bench/soak.py [--minutes 3] [--classes 1] [--storm] [--no-reads]
                                   [--tree PATH]   # the stack from another checkout

All simulated phones share one address, so every pool stays under the gateway's
per-address connection limit (256). The phones are aiohttp clients: httpx's pool
spent the client's CPU in proportion to the requests queued times the connections,
which with hundreds of phones took a core from the stack it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from media import MiB, build_video
from multidict import CIMultiDict
from pymongo import MongoClient
from support import bearer, throwaway_stack

PARTICIPANTS = 60
SENTIMENT_EVERY = 20.0
GPS_EVERY = 30.0
GPS_PER_BATCH = 10
VLOG_EVERY = 20.0
EXPORT_EVERY = 30.0
GPS_LIST_EVERY = 10.0
STORM_DAYS = 2
STORM_BATCH = 1000
STALL_SECONDS = 1.0
# Shorter than the gateway's keep-alive (uvicorn closes an idle connection after 5 s),
# so no request goes out on a connection the server is closing.
KEEPALIVE = 4.0
WRITES = ("sentiment", "gps batch", "storm batch", "vlog raw", "vlog tus")
EMOTIONS = ("happy", "calm", "sad", "anxious", "angry", "excited")


@dataclass
class Reply:
    status_code: int
    headers: CIMultiDict[str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class Client:
    """Requests to the gateway over a pool of at most `connections`."""

    def __init__(self, base: str, connections: int, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = headers or {}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE),
            timeout=aiohttp.ClientTimeout(total=120, connect=10),
        )

    async def request(self, method: str, path: str, **options: Any) -> Reply:
        headers = {**self.headers, **options.pop("headers", {})}
        async with self.session.request(
            method, self.base + path, headers=headers, **options
        ) as answer:
            return Reply(answer.status, CIMultiDict(answer.headers), await answer.read())

    async def post(self, path: str, **options: Any) -> Reply:
        return await self.request("POST", path, **options)

    async def get(self, path: str, **options: Any) -> Reply:
        return await self.request("GET", path, **options)

    async def patch(self, path: str, **options: Any) -> Reply:
        return await self.request("PATCH", path, **options)

    async def close(self) -> None:
        await self.session.close()


ClientError = (aiohttp.ClientError, asyncio.TimeoutError)


@dataclass
class Answer:
    kind: str
    status: int  # 0: no answer (a connection error or the client's timeout)
    began: float
    ended: float
    error: str = ""  # why there was no answer


@dataclass
class Run:
    began: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    # Confirmed records' client ids, and vlogs' (id, sha256), by kind.
    confirmed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    vlogs: list[tuple[str, str]] = field(default_factory=list)
    # When the storm was sent, from its first request to its last answer.
    storm: tuple[float, float] | None = None

    async def call(self, kind: str, send: Callable[[], Awaitable[Reply]]) -> Reply | None:
        """Sends until answered other than 503/429 (after Retry-After, as phones do)."""
        for _ in range(20):
            began = time.monotonic()
            try:
                answer = await send()
            except ClientError as problem:
                self.answers.append(
                    Answer(kind, 0, began, time.monotonic(), type(problem).__name__)
                )
                await asyncio.sleep(2.0)
                continue
            self.answers.append(Answer(kind, answer.status_code, began, time.monotonic()))
            if answer.status_code not in (429, 503):
                return answer
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
        return None


def now_iso(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) - offset).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sentiment(user_id: str, rng: random.Random, ago: timedelta = timedelta()) -> dict:
    return {
        "user_id": user_id,
        "emotion": rng.choice(EMOTIONS),
        "intensity": round(rng.random(), 2),
        "timestamp": now_iso(ago),
        "client_id": uuid.uuid4().hex,
    }


def fix(user_id: str, rng: random.Random, ago: timedelta) -> dict:
    return {
        "user_id": user_id,
        "latitude": 25.03 + rng.uniform(-0.05, 0.05),
        "longitude": 121.56 + rng.uniform(-0.05, 0.05),
        "timestamp": now_iso(ago),
        "client_id": uuid.uuid4().hex,
    }


@dataclass
class Phone:
    user_id: str
    headers: dict[str, str]


@dataclass
class Class:
    study_id: str
    phones: list[Phone]
    viewer: dict[str, str]


async def enrol_class(admin: Client, anonymous: Client, number: int) -> Class:
    study_id = f"soak-{number:02d}-{uuid.uuid4().hex[:6]}"
    created = await admin.post("/api/studies", json={"study_id": study_id, "name": study_id})
    assert created.status_code == 201, created.text
    issued = await admin.post(f"/api/studies/{study_id}/participants", json={"count": PARTICIPANTS})
    assert issued.status_code == 201, issued.text
    phones: list[Phone] = []
    for person in issued.json()["participants"]:
        answer = await anonymous.post(
            "/api/enrol", json={"study_id": study_id, "code": person["code"]}
        )
        assert answer.status_code in (200, 201), answer.text
        token = answer.json()["token"]
        phones.append(Phone(person["user_id"], {"Authorization": f"Bearer {token}"}))
    viewer = await admin.post(
        "/api/viewer-tokens", json={"name": f"TA of {study_id}", "study_ids": [study_id]}
    )
    assert viewer.status_code == 201, viewer.text
    return Class(study_id, phones, {"Authorization": f"Bearer {viewer.json()['token']}"})


Action = Callable[[], Awaitable[object]]


async def two_rhythms(
    until: float,
    rng: random.Random,
    first: tuple[float, Action],
    second: tuple[float, Action],
    jitter: float = 0.0,
) -> None:
    """Does each action about every its seconds (from a random phase, each interval
    varied by up to `jitter` of itself), one at a time, until `until`."""
    (first_every, first_action), (second_every, second_action) = first, second
    next_first = time.monotonic() + rng.uniform(0, first_every)
    next_second = time.monotonic() + rng.uniform(0, second_every)
    while True:
        due = min(next_first, next_second)
        if due >= until:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if next_first <= next_second:
            next_first += rng.uniform(1 - jitter, 1 + jitter) * first_every
            await first_action()
        else:
            next_second += rng.uniform(1 - jitter, 1 + jitter) * second_every
            await second_action()


async def phone_posts(run: Run, client: Client, phone: Phone, until: float) -> None:
    rng = random.Random(phone.user_id + str(id(phone)))

    async def post_sentiment() -> None:
        record = sentiment(phone.user_id, rng)
        answer = await run.call(
            "sentiment",
            lambda: client.post("/api/sentiments", json=record, headers=phone.headers),
        )
        if answer is not None and answer.status_code in (200, 201, 409):
            run.confirmed["sentiments"].append(record["client_id"])

    async def post_fixes() -> None:
        fixes = [fix(phone.user_id, rng, timedelta(seconds=3 * n)) for n in range(GPS_PER_BATCH)]
        await post_batch(run, client, phone, "gps batch", "gps", fixes)

    await two_rhythms(
        until, rng, (SENTIMENT_EVERY, post_sentiment), (GPS_EVERY, post_fixes), jitter=0.5
    )


async def post_batch(
    run: Run, client: Client, phone: Phone, kind: str, path: str, records: list[dict]
) -> None:
    answer = await run.call(
        kind, lambda: client.post(f"/api/{path}/batch", json=records, headers=phone.headers)
    )
    if answer is not None and answer.status_code in (200, 201):
        # A batch stores every valid record; one already stored counts as a duplicate.
        collection = "sentiments" if path == "sentiments" else "gps_coordinates"
        run.confirmed[collection] += [record["client_id"] for record in records]


async def storm(run: Run, client: Client, phone: Phone) -> None:
    """Two days of one phone's queue, sent at once, oldest first."""
    rng = random.Random(phone.user_id)
    minutes = STORM_DAYS * 24 * 60
    fixes = [fix(phone.user_id, rng, timedelta(minutes=minutes - n)) for n in range(minutes)]
    feelings = [
        sentiment(phone.user_id, rng, timedelta(minutes=minutes - n)) for n in range(0, minutes, 20)
    ]
    for start in range(0, len(fixes), STORM_BATCH):
        await post_batch(
            run, client, phone, "storm batch", "gps", fixes[start : start + STORM_BATCH]
        )
    await post_batch(run, client, phone, "storm batch", "sentiments", feelings)


async def uploads(run: Run, client: Client, group: Class, until: float, folder: Path) -> None:
    rng = random.Random(group.study_id)
    await asyncio.sleep(rng.uniform(0, VLOG_EVERY))
    count = 0
    while time.monotonic() < until:
        began = time.monotonic()
        phone = group.phones[count % len(group.phones)]
        name = f"{group.study_id}-{count}.mp4"
        data = await asyncio.to_thread(fresh_video, folder / name, rng.randint(5, 10) * MiB)
        if count % 3 == 2:
            answer = await tus_upload(run, client, phone, data)
        else:
            answer = await run.call(
                "vlog raw",
                lambda who=phone, name=name, data=data: client.post(
                    "/api/vlogs/upload/raw",
                    params={"user_id": who.user_id, "filename": name},
                    data=data,
                    headers={**who.headers, "Content-Type": "application/octet-stream"},
                ),
            )
        if answer is not None and answer.status_code == 201:
            body = answer.json()
            vlog = body.get("vlog", body)
            run.vlogs.append((vlog.get("id") or vlog.get("_id"), vlog.get("sha256", "")))
        count += 1
        await asyncio.sleep(max(0.0, VLOG_EVERY - (time.monotonic() - began)))


def fresh_video(path: Path, size: int) -> bytes:
    """A video no one uploaded before (its padding is random), as bytes."""
    build_video(path, size)
    data = path.read_bytes()
    path.unlink()
    return data


async def tus_upload(run: Run, client: Client, phone: Phone, data: bytes) -> Reply | None:
    """A tus 1.0 upload in 2 MiB PATCHes, timed from creation to the last answer."""
    began = time.monotonic()
    try:
        return await _tus_upload(run, client, phone, data)
    except ClientError as problem:
        run.answers.append(Answer("vlog tus", 0, began, time.monotonic(), type(problem).__name__))
        return None


async def _tus_upload(run: Run, client: Client, phone: Phone, data: bytes) -> Reply | None:
    tus = {**phone.headers, "Tus-Resumable": "1.0.0"}
    who = base64.b64encode(phone.user_id.encode()).decode()
    began = time.monotonic()
    created = await client.post(
        "/api/vlogs/tus",
        headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": f"user_id {who}"},
        # A creation without bytes has no type (aiohttp would say octet-stream).
        skip_auto_headers=["Content-Type"],
    )
    if created.status_code != 201:
        run.answers.append(Answer("vlog tus", created.status_code, began, time.monotonic()))
        return None
    location, offset, size = created.headers["location"], 0, len(data)
    answer = created
    while offset < size:
        piece = data[offset : offset + 2 * MiB]
        answer = await client.patch(
            location,
            data=piece,
            headers={
                **tus,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        if answer.status_code != 204:
            break
        offset += len(piece)
    run.answers.append(Answer("vlog tus", answer.status_code, began, time.monotonic()))
    if answer.status_code != 204:
        return None
    # The last PATCH names the vlog the upload made.
    made = {"id": answer.headers.get("X-Vlog-Id", "")}
    return Reply(201, CIMultiDict(), json.dumps(made).encode())


async def viewer(run: Run, client: Client, group: Class, until: float) -> None:
    study, headers = {"study_id": group.study_id}, group.viewer

    def export_page() -> Awaitable[object]:
        return run.call("export page", lambda: client.get("/export", params=study, headers=headers))

    def gps_list() -> Awaitable[object]:
        return run.call(
            "gps list",
            lambda: client.get("/api/gps", params={**study, "limit": 100}, headers=headers),
        )

    rng = random.Random(group.study_id + "viewer")
    await two_rhythms(until, rng, (EXPORT_EVERY, export_page), (GPS_LIST_EVERY, gps_list))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def stalls(answers: list[Answer], began: float) -> list[tuple[float, float]]:
    """(start, length) of every span of STALL_SECONDS or more in which writes were
    waiting and none was answered."""
    writes = [a for a in answers if a.kind in WRITES]
    answered = sorted(a.ended for a in writes if a.status)
    found = []
    for before, after in itertools.pairwise(answered):
        if after - before < STALL_SECONDS:
            continue
        if any(a.began <= before and a.ended >= after for a in writes):
            found.append((before - began, after - before))
    return found


def memory(pids: dict[str, int]) -> dict[str, int]:
    """Resident bytes of each process with its children (a service's workers)."""
    sizes = {}
    for name, pid in pids.items():
        try:
            process = psutil.Process(pid)
            tree = [process, *process.children(recursive=True)]
            sizes[name] = sum(p.memory_info().rss for p in tree)
        except psutil.NoSuchProcess:
            sizes[name] = 0
    return sizes


def stored_counts(uri: str, collection: str) -> Counter[str]:
    with MongoClient(uri) as client:
        found = client.emogo[collection].find(
            {"client_id": {"$type": "string"}}, {"client_id": 1, "_id": 0}
        )
        return Counter(document["client_id"] for document in found)


def check_records(uri: str, run: Run) -> list[str]:
    lines = []
    for collection, confirmed in sorted(run.confirmed.items()):
        stored = stored_counts(uri, collection)
        missing = sum(1 for client_id in set(confirmed) if stored[client_id] == 0)
        duplicated = sum(1 for count in stored.values() if count > 1)
        lines.append(
            f"  {collection:16} confirmed {len(set(confirmed)):>8}  missing {missing}  "
            f"stored twice or more {duplicated}"
        )
    with MongoClient(uri) as client:
        vlogs = client.emogo["vlogs"]
        ids = [vlog_id for vlog_id, _ in run.vlogs]
        stored_ids = {str(v["_id"]) for v in vlogs.find({}, {"_id": 1})}
        digests = Counter(v.get("sha256") for v in vlogs.find({}, {"sha256": 1}))
    missing = sum(1 for vlog_id in ids if vlog_id not in stored_ids and len(vlog_id) == 24)
    duplicated = sum(1 for digest, count in digests.items() if digest and count > 1)
    lines.append(
        f"  {'vlogs':16} confirmed {len(ids):>8}  missing {missing}  "
        f"stored twice or more {duplicated}"
    )
    return lines


def report(run: Run, memory_at: dict[str, dict[str, int]], records: list[str]) -> str:
    lines = [
        "",
        "kind            requests  statuses                      p50     p99   p99.9     max",
    ]
    by_kind: dict[str, list[Answer]] = defaultdict(list)
    for answer in run.answers:
        by_kind[answer.kind].append(answer)
    for kind, answers in sorted(by_kind.items()):
        seconds = [a.ended - a.began for a in answers]
        statuses = " ".join(
            f"{s or 'none'}:{n}" for s, n in sorted(Counter(a.status for a in answers).items())
        )
        lines.append(
            f"{kind:14} {len(answers):>9}  {statuses:26} "
            + " ".join(f"{percentile(seconds, q):7.3f}" for q in (0.5, 0.99, 0.999))
            + f" {max(seconds):7.3f}"
        )
    if run.storm is not None:
        lines.append("\nsingle sentiments     p50     p99   p99.9     max  (seconds)")
        began, ended = run.storm
        for phase, inside in (
            ("before the storm", lambda a: a.began < began),
            ("during the storm", lambda a: began <= a.began < ended),
            ("after the storm", lambda a: a.began >= ended),
        ):
            seconds = [a.ended - a.began for a in by_kind["sentiment"] if inside(a)]
            if seconds:
                lines.append(
                    f"  {phase:17}"
                    + " ".join(f"{percentile(seconds, q):7.3f}" for q in (0.5, 0.99, 0.999))
                    + f" {max(seconds):7.3f}"
                )
    server_errors = sum(1 for a in run.answers if a.status >= 500 or a.status == 0)
    lines.append(f"\nresponses 5xx or none: {server_errors}")
    unanswered = Counter(a.error for a in run.answers if a.status == 0)
    if unanswered:
        lines.append("  no answer: " + ", ".join(f"{e} {n}" for e, n in unanswered.most_common()))
    found = stalls(run.answers, run.began)
    lines.append(f"stalls of {STALL_SECONDS:g} s or more: {len(found)}")
    lines += [f"  at {start:7.1f} s for {length:5.2f} s" for start, length in found]
    lines.append("records:")
    lines += records
    lines.append("resident memory (MiB)     start      end")
    for name in memory_at["start"]:
        start, end = memory_at["start"][name], memory_at["end"][name]
        lines.append(f"  {name:20} {start / MiB:8.0f} {end / MiB:8.0f}")
    return "\n".join(lines)


async def soak(
    args: argparse.Namespace, gateway: str, admin: dict[str, str], pids: dict[str, int]
) -> tuple[Run, dict[str, dict[str, int]]]:
    admin_client = Client(gateway, 10, admin)
    phones = Client(gateway, 120)
    storm_client = Client(gateway, 30)
    others = Client(gateway, 40)
    try:
        classes = await asyncio.gather(
            *(enrol_class(admin_client, others, number) for number in range(args.classes))
        )
        print(f"enrolled {args.classes} x {PARTICIPANTS} participants", flush=True)
        memory_at = {"start": memory(pids)}
        run = Run()
        until = run.began + args.minutes * 60
        folder = Path(tempfile.mkdtemp(prefix="emogo-soak-"))
        tasks = [
            *(
                phone_posts(run, phones, phone, until)
                for group in classes
                for phone in group.phones
            ),
            *(uploads(run, others, group, until, folder) for group in classes),
            *(viewer(run, others, group, until) for group in classes if not args.no_reads),
        ]
        if args.storm:

            async def storm_midway() -> None:
                await asyncio.sleep(args.minutes * 30)
                print("storm: the first class's phones send two days each", flush=True)
                began = time.monotonic()
                await asyncio.gather(*(storm(run, storm_client, p) for p in classes[0].phones))
                run.storm = (began, time.monotonic())
                print(
                    f"storm sent in {time.monotonic() - run.began - args.minutes * 30:.0f} s",
                    flush=True,
                )

            tasks.append(storm_midway())
        await asyncio.gather(*tasks)
        memory_at["end"] = memory(pids)
        return run, memory_at
    finally:
        for client in (admin_client, phones, storm_client, others):
            await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument("--storm", action="store_true")
    parser.add_argument(
        "--no-reads", action="store_true", help="without the TAs (what their reads cost writes)"
    )
    parser.add_argument("--tree", type=Path, help="run the stack of this checkout")
    args = parser.parse_args()
    extra = {"PYTHONPATH": str(args.tree.resolve())} if args.tree else {}
    # Default settings, as `make run`; only the log level of the console is quieter.
    with throwaway_stack(**extra) as (config, supervisor):
        pids = {name: process.pid for name, process in supervisor.processes.items()}
        print(
            f"soak: {args.classes} class(es) of {PARTICIPANTS}, {args.minutes:g} min"
            f"{', reconnect storm midway' if args.storm else ''}"
            f"{f', stack of {args.tree}' if args.tree else ''}; machine {os.cpu_count()} cores",
            flush=True,
        )
        run, memory_at = asyncio.run(
            soak(args, config.url("gateway"), bearer(config, "admin"), pids)
        )
        records = check_records(config.mongodb_uri, run)
        print(report(run, memory_at, records))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
