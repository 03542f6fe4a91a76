"""`python -m generators`: populate a running EmoGo stack through its gateway.

    python -m generators enrol --study psych101 --participants 5   # a study, 5 phones
    python -m generators demo --study psych101  # a week of their data, ten vlogs
    python -m generators telemetry --participants 20 --days 14
    python -m generators videos --count 5 --codec mpeg4
    python -m generators load --kind sentiments --seconds 10 --concurrency 8

Everything goes through the gateway as a phone would: with `--study`, each enrolled
participant's data with that participant's own token (saved by `enrol`), else with
the device credential. `enrol` uses the admin credential.
Exit codes: 0 done, 1 failed, 2 bad options, 3 gateway unreachable, 4 credential refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from tqdm import tqdm

from generators.client import Gateway, GeneratorError, default_gateway, default_token
from generators.enrolment import enrol, load_tokens, tokens_file
from generators.resumable import upload_resumable
from generators.telemetry import DEFAULT_CENTRE, dataset, participants
from generators.videos import VideoSpec, make_video


def _centre(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("must be LAT,LON such as 25.0173,121.5397") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError("latitude must lie in [-90, 90], longitude in [-180, 180]")
    return lat, lon


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a date such as 2025-11-17") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m generators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--gateway",
        default=default_gateway(),
        help="the gateway's URL (default: EMOGO_GATEWAY_URL, else http://127.0.0.1:"
        "$EMOGO_GATEWAY_PORT, else :8000)",
    )
    top.add_argument(
        "--token",
        default=default_token(),
        help="the device token (default: EMOGO_DEVICE_TOKEN, else data/credentials.env)",
    )
    top.add_argument("--seed", type=int, default=1, help="same seed, same data (default 1)")
    commands = top.add_subparsers(dest="command", required=True)

    def telemetry_options(command: argparse.ArgumentParser, participants: int, days: int) -> None:
        command.add_argument(
            "--participants", type=int, default=participants, help="how many people"
        )
        command.add_argument("--days", type=int, default=days, help="days of data per person")
        command.add_argument(
            "--start",
            type=_day,
            default=None,
            help="first day (default: DAYS days before today, UTC)",
        )
        command.add_argument(
            "--centre",
            type=_centre,
            default=DEFAULT_CENTRE,
            help="LAT,LON the places lie around (default: National Taiwan University)",
        )
        command.add_argument("--batch", type=int, default=500, help="records per request")
        study_option(command)

    def study_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--study",
            default=None,
            help="send as the participants `enrol` enrolled in this study, each with its "
            "own token (default: the device token, participants made up)",
        )

    def video_options(command: argparse.ArgumentParser, count: int) -> None:
        command.add_argument("--count", type=int, default=count, help="how many vlogs")
        command.add_argument("--seconds", type=float, default=3.0, help="length of each video")
        command.add_argument("--width", type=int, default=640, help="frame width")
        command.add_argument("--height", type=int, default=480, help="frame height")
        command.add_argument(
            "--codec",
            choices=("h264", "mpeg4"),
            default="h264",
            help="h264 (plays in browsers) or mpeg4 (the seed's OpenCV kind; the media "
            "service makes an H.264 preview)",
        )

    telemetry = commands.add_parser("telemetry", help="sentiments and GPS fixes")
    telemetry_options(telemetry, participants=5, days=7)
    videos = commands.add_parser("videos", help="MP4 vlogs")
    video_options(videos, count=10)
    videos.add_argument("--participants", type=int, default=5, help="whose vlogs they are")
    videos.add_argument(
        "--resumable",
        action="store_true",
        help="upload with tus 1.0 in chunks, as a phone on a poor network would",
    )
    videos.add_argument(
        "--chunk-mb", type=float, default=1.0, help="with --resumable: MiB per chunk (default 1)"
    )
    videos.add_argument(
        "--drop-at",
        type=float,
        default=None,
        help="with --resumable: cut the connection once at this fraction of each video "
        "(0.9 = 90 %%) and resume from what the server kept",
    )
    study_option(videos)
    demo = commands.add_parser("demo", help="a populated stack: telemetry and vlogs")
    telemetry_options(demo, participants=5, days=7)
    video_options(demo, count=10)
    enrolment = commands.add_parser(
        "enrol", help="a study with participants, their codes exchanged for their tokens"
    )
    enrolment.add_argument("--study", required=True, help="the study's id, such as psych101")
    enrolment.add_argument("--participants", type=int, default=5, help="how many to enrol")
    enrolment.add_argument("--name", default=None, help="the study's name (default: its id)")
    enrolment.add_argument("--time-zone", default="UTC", help="IANA time zone (default UTC)")
    enrolment.add_argument(
        "--admin-token",
        default=default_token("EMOGO_ADMIN_TOKEN"),
        help="the admin token (default: EMOGO_ADMIN_TOKEN, else data/credentials.env)",
    )
    enrolment.add_argument(
        "--json", action="store_true", help="print the study and its participants' tokens"
    )
    enrolment.add_argument(
        "--top-up",
        action="store_true",
        help="enrol only as many as it takes to have --participants saved (for make demo)",
    )
    load = commands.add_parser("load", help="a steady load for benchmarks")
    load.add_argument("--kind", choices=("sentiments", "gps"), default="sentiments")
    load.add_argument("--seconds", type=float, default=10.0, help="how long")
    load.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    load.add_argument("--rate", type=float, default=None, help="target requests per second")
    return top


class Senders:
    """Who sends each made-up participant's data: the device credential for everyone,
    or with `--study` the n-th enrolled participant with their own token (and id)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.gateway_url, self.device_token = args.gateway, args.token
        self.enrolled = load_tokens(args.study) if getattr(args, "study", None) else None
        if self.enrolled is not None and args.participants > len(self.enrolled):
            raise GeneratorError(
                f"Only {len(self.enrolled)} participants of study {args.study!r} are saved "
                f"in {tokens_file(args.study)}: enrol more, or ask for fewer --participants",
                2,
            )
        self._gateways: dict[str, Gateway] = {}

    def _gateway(self, token: str | None) -> Gateway:
        key = token or ""
        if key not in self._gateways:
            self._gateways[key] = Gateway(self.gateway_url, token)
        return self._gateways[key]

    def check(self) -> str:
        if self.enrolled is None:
            return self._gateway(self.device_token).check()
        roles = {self._gateway(p["token"]).check() for p in self.enrolled}
        return ", ".join(sorted(roles)) + f" ({len(self.enrolled)} participants)"

    def of(self, index: int, user_id: str) -> tuple[Gateway, str]:
        """The gateway client and the participant id for made-up participant `index`."""
        if self.enrolled is None:
            return self._gateway(self.device_token), user_id
        participant = self.enrolled[index]
        return self._gateway(participant["token"]), participant["user_id"]

    def close(self) -> None:
        for gateway in self._gateways.values():
            gateway.close()


def push_telemetry(senders: Senders, args: argparse.Namespace) -> dict[str, int]:
    start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days))
    moods, fixes = dataset(args.participants, args.days, args.seed, start, args.centre)
    people = [p.user_id for p in participants(args.participants, args.seed, args.centre)]
    totals = {"stored": 0, "duplicates": 0, "rejected": 0}
    with tqdm(total=len(moods) + len(fixes), unit="record", desc="telemetry") as bar:
        for path, records in (("/api/sentiments/batch", moods), ("/api/gps/batch", fixes)):
            # Each participant's records in batches of their own, as their phone sends.
            for index, person in enumerate(people):
                gateway, user_id = senders.of(index, person)
                own = [{**r, "user_id": user_id} for r in records if r["user_id"] == person]
                for first in range(0, len(own), args.batch):
                    batch = own[first : first + args.batch]
                    response = gateway.send("POST", path, json=batch)
                    if response.status_code != 200:
                        raise GeneratorError(
                            f"{path}: {response.status_code} {response.text[:300]}"
                        )
                    result = response.json()
                    for key in totals:
                        totals[key] += result[key]
                    bar.update(len(batch))
    return totals


def push_videos(senders: Senders, args: argparse.Namespace, people: int) -> dict[str, int]:
    owners = participants(people, args.seed, DEFAULT_CENTRE)
    start = getattr(args, "start", None) or (datetime.now(UTC).date() - timedelta(days=7))
    totals = {"stored": 0, "duplicates": 0, "bytes": 0}
    with tempfile.TemporaryDirectory(prefix="emogo-videos-") as folder:
        files = []
        for n in tqdm(range(args.count), unit="video", desc="encoding"):
            spec = VideoSpec(
                title=f"Vlog {n + 1}: day {n % 7 + 1}",
                seconds=args.seconds,
                width=args.width,
                height=args.height,
                seed=args.seed * 1000 + n,
            )
            files.append(make_video(spec, Path(folder) / f"vlog-{n + 1}.mp4", args.codec))
        size = sum(path.stat().st_size for path in files)
        with tqdm(total=size, unit="B", unit_scale=True, desc="uploading") as bar:
            for n, path in enumerate(files):
                gateway, user_id = senders.of(n % len(owners), owners[n % len(owners)].user_id)
                recorded = datetime(start.year, start.month, start.day, 20, tzinfo=UTC)
                recorded += timedelta(days=n % 7, minutes=n)
                fields = {
                    "user_id": user_id,
                    "title": f"Vlog {n + 1}",
                    "description": "Generated by python -m generators",
                    "timestamp": recorded.isoformat(),
                }
                if getattr(args, "resumable", False):
                    duplicate = upload_resumable(
                        gateway,
                        path,
                        {**fields, "filename": path.name},
                        max(1, int(args.chunk_mb * 1024 * 1024)),
                        bar.update,
                        args.drop_at,
                    )
                    totals["duplicates" if duplicate else "stored"] += 1
                    totals["bytes"] += path.stat().st_size
                    continue
                response = gateway.send(
                    "POST",
                    "/api/vlogs/upload",
                    data=fields,
                    files={"video": (path.name, path.read_bytes(), "video/mp4")},
                )
                if response.status_code not in (200, 201):
                    raise GeneratorError(f"upload: {response.status_code} {response.text[:300]}")
                totals["duplicates" if response.json()["duplicate"] else "stored"] += 1
                totals["bytes"] += path.stat().st_size
                bar.update(path.stat().st_size)
    return totals


async def run_load(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.token}"}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + args.seconds
    interval = args.concurrency / args.rate if args.rate else 0.0
    counter = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            body = (
                {"user_id": "LOAD", "emotion": "calm", "intensity": 0.5}
                if args.kind == "sentiments"
                else {"user_id": "LOAD", "latitude": 25.0, "longitude": 121.5}
            )
            started = time.perf_counter()
            response = await client.post(f"/api/{args.kind}", json=body)
            took = time.perf_counter() - started
            latencies.append(took)
            if response.status_code != 201:
                errors += 1
            if interval > took:
                await asyncio.sleep(interval - took)

    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(
        base_url=args.gateway, headers=headers, limits=limits, timeout=60
    ) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - began
    if not latencies:
        raise GeneratorError("no request completed")
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    print(
        f"{len(latencies)} requests in {elapsed:.1f} s: {len(latencies) / elapsed:.0f}/s, "
        f"{errors} failed; latency p50 {cuts[49] * 1000:.1f} ms, p95 {cuts[94] * 1000:.1f} ms, "
        f"p99 {cuts[98] * 1000:.1f} ms"
    )


def report_enrolment(args: argparse.Namespace) -> int:
    count = args.participants
    if args.top_up and tokens_file(args.study).is_file():
        count -= len(load_tokens(args.study))
        if count <= 0:
            print(f"Study {args.study}: {args.participants} participants saved already.")
            return 0
    result = enrol(
        args.gateway, args.admin_token, args.study, count, args.name or args.study, args.time_zone
    )
    if args.json:
        print(json.dumps(result))
    else:
        people = ", ".join(p["user_id"] for p in result["participants"])
        print(
            f"Study {args.study}: enrolled {people}; their tokens are in "
            f"{tokens_file(args.study)} (send with --study {args.study})."
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        for name in ("participants", "days", "count", "batch", "concurrency"):
            if getattr(args, name, 1) < 1:
                raise GeneratorError(f"--{name} must be at least 1", 2)
        if args.command == "enrol":
            return report_enrolment(args)
        senders = Senders(args)
        try:
            role = senders.check()
            print(f"Gateway {args.gateway.rstrip('/')}, signed in as {role}.")
            summary: dict[str, dict[str, int]] = {}
            if args.command in ("telemetry", "demo"):
                summary["telemetry"] = push_telemetry(senders, args)
            if args.command in ("videos", "demo"):
                summary["vlogs"] = push_videos(senders, args, args.participants)
            if args.command == "load":
                asyncio.run(run_load(args))
        finally:
            senders.close()
    except GeneratorError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return problem.exit_code
    for part, counts in summary.items():
        print(f"{part}: " + ", ".join(f"{value} {key}" for key, value in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
