"""The generators: real H.264 videos, deterministic realistic telemetry, and runs
against the real stack that store the expected counts once, or fail clearly."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

import av
import cv2
import httpx
import pytest

from generators.telemetry import DEFAULT_CENTRE, dataset, participants
from generators.videos import VideoSpec, make_video
from tests.conftest import Stack
from tests.support import REPO, TOKENS, free_port


@pytest.mark.parametrize(("codec", "decoder"), [("h264", "h264"), ("mpeg4", "mpeg4")])
def test_videos_decode_as_asked(tmp_path: Path, codec: str, decoder: str) -> None:
    spec = VideoSpec(title="Test vlog", seconds=2.0, width=320, height=240, seed=3)
    path = make_video(spec, tmp_path / "v.mp4", codec)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == decoder
        assert float(stream.duration * stream.time_base) == pytest.approx(2.0, abs=0.05)
    capture = cv2.VideoCapture(str(path))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        320,
        240,
    )
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 60


def test_the_same_seed_gives_the_same_video(tmp_path: Path) -> None:
    spec = VideoSpec(title="Same", seconds=1.0, seed=9)
    first = make_video(spec, tmp_path / "a.mp4").read_bytes()
    second = make_video(spec, tmp_path / "b.mp4").read_bytes()
    other = make_video(
        VideoSpec(title="Same", seconds=1.0, seed=10), tmp_path / "c.mp4"
    ).read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert first != other


def test_telemetry_is_deterministic_and_plausible() -> None:
    start = date(2025, 11, 17)
    moods, fixes = dataset(4, 3, seed=7, start=start)
    assert (moods, fixes) == dataset(4, 3, seed=7, start=start)
    assert dataset(4, 3, seed=8, start=start) != (moods, fixes)
    assert len({m["user_id"] for m in moods}) == 4
    assert len({m["client_id"] for m in moods}) == len(moods)
    assert len({f["client_id"] for f in fixes}) == len(fixes)
    # Opaque: a phone id never carries the participant's id into a pseudonymous study.
    for record in (*moods, *fixes):
        assert record["user_id"] not in record["client_id"]
    for user_id in {m["user_id"] for m in moods}:
        first_day = [m for m in moods if m["user_id"] == user_id and "2025-11-17" in m["timestamp"]]
        assert 3 <= len(first_day) <= 5
    assert all(0 <= m["intensity"] <= 1 for m in moods)
    for fix in fixes:
        north = (fix["latitude"] - DEFAULT_CENTRE[0]) * 111_320
        east = (fix["longitude"] - DEFAULT_CENTRE[1]) * 111_320 * math.cos(math.radians(25))
        assert math.hypot(north, east) < 3_500  # around campus
        day = datetime.fromisoformat(fix["timestamp"]).astimezone(UTC).date()
        assert start <= day <= date(2025, 11, 19)
    # People dwell: most consecutive fixes of a person are at the same named place.
    first = [f for f in fixes if f["user_id"] == fixes[0]["user_id"]][:96]
    same_place = sum(a["location_name"] == b["location_name"] for a, b in pairwise(first))
    assert same_place > len(first) * 0.7


def generator(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generators", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_stores_exactly_the_dataset_once(stack: Stack) -> None:
    env = {"EMOGO_GATEWAY_URL": stack.gateway, "EMOGO_DEVICE_TOKEN": TOKENS["device"]}
    args = ["--seed", "42", "demo", "--participants", "2", "--days", "2", "--start", "2024-05-06",
            "--count", "2", "--seconds", "1"]  # fmt: skip
    first = generator(args, env)
    assert first.returncode == 0, first.stderr
    moods, fixes = dataset(2, 2, seed=42, start=date(2024, 5, 6))
    assert f"telemetry: {len(moods) + len(fixes)} stored, 0 duplicates" in first.stdout
    assert "vlogs: 2 stored, 0 duplicates" in first.stdout
    window = {"since": "2024-05-06", "until": "2024-05-08"}
    with stack.client("viewer") as viewer:
        people = {
            p["user_id"]
            for p in viewer.get("/api/telemetry/participants", params=window).json()["participants"]
        }

        def count(kind: str) -> int:
            return sum(
                viewer.get(f"/api/{kind}/count", params={**window, "user_id": u}).json()["count"]
                for u in people
            )

        counted = {kind: count(kind) for kind in ("sentiments", "gps")}
        assert counted == {"sentiments": len(moods), "gps": len(fixes)}
        vlogs = sum(
            viewer.get("/api/vlogs/count", params={"user_id": u}).json()["count"] for u in people
        )
        assert vlogs == 2
        again = generator(args, env)
        assert again.returncode == 0, again.stderr
        assert f"telemetry: 0 stored, {len(moods) + len(fixes)} duplicates" in again.stdout
        assert "vlogs: 0 stored, 2 duplicates" in again.stdout
        assert (
            sum(
                viewer.get("/api/vlogs/count", params={"user_id": u}).json()["count"]
                for u in people
            )
            == 2
        )


def test_clear_errors(stack: Stack) -> None:
    refused = generator(
        ["telemetry"], {"EMOGO_GATEWAY_URL": stack.gateway, "EMOGO_DEVICE_TOKEN": "not-the-token"}
    )
    assert refused.returncode == 4
    assert "refused the credential" in refused.stderr
    viewer = generator(
        ["telemetry"], {"EMOGO_GATEWAY_URL": stack.gateway, "EMOGO_DEVICE_TOKEN": TOKENS["viewer"]}
    )
    assert viewer.returncode == 4
    stopped = generator(
        ["demo"],
        {"EMOGO_GATEWAY_URL": f"http://127.0.0.1:{free_port()}", "EMOGO_DEVICE_TOKEN": "x" * 20},
    )
    assert stopped.returncode == 3
    assert "Cannot reach the gateway" in stopped.stderr
    bad = generator(["telemetry", "--centre", "north"], {"EMOGO_DEVICE_TOKEN": "x" * 20})
    assert bad.returncode == 2
    assert "LAT,LON" in bad.stderr
    assert "--participants" in generator(["telemetry", "--help"], {}).stdout


def test_a_study_is_enrolled_and_each_phone_sends_as_itself(stack: Stack, tmp_path: Path) -> None:
    study_id = f"gen-{uuid.uuid4().hex[:8]}"
    env = {
        "EMOGO_GATEWAY_URL": stack.gateway,
        "EMOGO_ADMIN_TOKEN": TOKENS["admin"],
        "EMOGO_DATA_DIR": str(tmp_path),
        "EMOGO_DEVICE_TOKEN": "",
    }
    enrolled = generator(["enrol", "--study", study_id, "--participants", "2", "--json"], env)
    assert enrolled.returncode == 0, enrolled.stderr
    body = json.loads(enrolled.stdout)
    assert body["study_id"] == study_id
    assert [p["user_id"] for p in body["participants"]] == ["P001", "P002"]
    assert all(p["token"].startswith("emp_") for p in body["participants"])
    saved = tmp_path / "studies" / f"{study_id}.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text())["participants"] == body["participants"]
    topped = generator(["enrol", "--study", study_id, "--participants", "3", "--top-up"], env)
    assert topped.returncode == 0, topped.stderr
    assert "enrolled P003" in topped.stdout
    again = generator(["enrol", "--study", study_id, "--participants", "3", "--top-up"], env)
    assert "saved already" in again.stdout

    args = ["--seed", "5", "demo", "--study", study_id, "--participants", "2", "--days", "1",
            "--start", "2024-06-03", "--count", "2", "--seconds", "1"]  # fmt: skip
    sent = generator(args, env)
    assert sent.returncode == 0, sent.stderr
    assert "signed in as participant (3 participants)" in sent.stdout
    moods, fixes = dataset(2, 1, seed=5, start=date(2024, 6, 3))
    assert f"telemetry: {len(moods) + len(fixes)} stored, 0 duplicates" in sent.stdout
    assert "vlogs: 2 stored, 0 duplicates" in sent.stdout
    made_up = sorted({m["user_id"] for m in moods})
    for participant, person in zip(body["participants"], made_up, strict=True):
        headers = {"Authorization": f"Bearer {participant['token']}"}
        with httpx.Client(base_url=stack.gateway, headers=headers) as phone:
            own = phone.get("/api/sentiments", params={"limit": 1000}).json()
            assert len(own) == sum(1 for m in moods if m["user_id"] == person)
            assert {r["user_id"] for r in own} == {participant["user_id"]}
            assert phone.get("/api/vlogs/count").json()["count"] == 1
    missing = generator(["telemetry", "--study", "never-enrolled"], env)
    assert missing.returncode == 2
    assert "enrol" in missing.stderr
    too_many = generator(["telemetry", "--study", study_id, "--participants", "9"], env)
    assert too_many.returncode == 2


def test_resumable_videos_survive_a_dropped_connection(stack: Stack) -> None:
    """`videos --resumable` cuts its connection half-way through each video, asks the
    server where to go on, and finishes; a second run finds the same videos stored."""
    env = {"EMOGO_GATEWAY_URL": stack.gateway, "EMOGO_DEVICE_TOKEN": TOKENS["device"]}
    args = ["--seed", "777", "videos", "--participants", "1", "--count", "2", "--seconds", "1",
            "--resumable", "--chunk-mb", "0.03", "--drop-at", "0.5"]  # fmt: skip
    first = generator(args, env)
    assert first.returncode == 0, first.stderr
    assert "vlogs: 2 stored, 0 duplicates" in first.stdout
    assert first.stderr.count("cut on purpose") == 2
    [owner] = participants(1, 777, DEFAULT_CENTRE)
    with stack.client("viewer") as viewer:
        vlogs = viewer.get("/api/vlogs", params={"user_id": owner.user_id}).json()
        assert len(vlogs) == 2
        assert {vlog["state"] for vlog in vlogs} == {"ready"}
        for vlog in vlogs:
            video = viewer.get(f"/api/vlogs/{vlog['_id']}/download").content
            assert hashlib.sha256(video).hexdigest() == vlog["sha256"]
            assert len(video) == vlog["file_size"]
    again = generator(args, env)
    assert again.returncode == 0, again.stderr
    assert "vlogs: 0 stored, 2 duplicates" in again.stdout


def test_a_code_exchange_waits_out_the_rate_limit() -> None:
    """An exchange refused 429 is sent again after its Retry-After, as a class enrolled
    at once passes the per-address limit."""
    from generators import enrolment

    answers = iter([429, 201, 429, 429, 201])
    waits: list[float] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status == 429:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"})
        code = json.loads(request.content)["code"]
        return httpx.Response(201, json={"user_id": f"P-{code}", "token": f"emp_{code}"})

    with httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(gateway)) as c:
        got = [
            enrolment._exchange(c, "s1", {"user_id": code, "code": code}, waits.append)
            for code in ("one", "two")
        ]
    assert waits == [7.0, 7.0, 7.0]
    assert [answer["token"] for answer in got] == ["emp_one", "emp_two"]
