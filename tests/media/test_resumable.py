"""Resumable uploads (tus 1.0.0) through the gateway: an upload goes on where it
stopped, also after the media service restarts, and ends as an ordinary vlog; the
protocol's refusals are the ones the specification names."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path

import httpx

from tests.conftest import Stack
from tests.media.conftest import h264_video

TUS = {"Tus-Resumable": "1.0.0"}
PATCH_TYPE = {"Content-Type": "application/offset+octet-stream"}


def metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def create(client: httpx.Client, length: int, **fields: str) -> str:
    created = client.post(
        "/api/vlogs/tus",
        headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(**fields)},
    )
    assert created.status_code == 201, created.text
    assert created.headers["tus-resumable"] == "1.0.0"
    return created.headers["location"]


def send(client: httpx.Client, location: str, offset: int, data: bytes) -> httpx.Response:
    headers = {**TUS, **PATCH_TYPE, "Upload-Offset": str(offset)}
    return client.patch(location, headers=headers, content=data)


def offset_of(client: httpx.Client, location: str) -> int:
    answer = client.head(location, headers=TUS)
    assert answer.status_code == 200, answer.status_code
    assert answer.headers["cache-control"] == "no-store"
    return int(answer.headers["upload-offset"])


def test_an_upload_resumes_after_a_restart_and_becomes_a_vlog(stack: Stack, tmp_path: Path) -> None:
    video = h264_video(tmp_path / "diary.mp4", 31)
    who = f"P-{uuid.uuid4().hex[:10]}"
    with stack.client("device") as device, stack.client("viewer") as viewer:
        options = device.options("/api/vlogs/tus")
        assert options.status_code == 204, options.headers
        assert options.headers.get("tus-version") == "1.0.0", dict(options.headers)
        assert "creation" in options.headers["tus-extension"].split(",")
        assert "termination" in options.headers["tus-extension"].split(",")
        assert int(options.headers["tus-max-size"]) > len(video)

        location = create(device, len(video), user_id=who, title="Morning", filename="diary.mp4")
        half = len(video) // 2
        first = send(device, location, 0, video[:half])
        assert first.status_code == 204, first.text
        assert first.headers["upload-offset"] == str(half)
        assert offset_of(device, location) == half

        # The offset a client was told is stored: it survives the service.
        media = stack.supervisor.processes["media"]
        media.terminate()
        media.wait(15)
        stack.supervisor.start("media")
        stack.supervisor.wait_ready("media")
        assert offset_of(device, location) == half

        # What the specification refuses, and nothing changes.
        assert send(device, location, 0, video[half:]).status_code == 409
        wrong_type = device.patch(
            location, headers={**TUS, "Upload-Offset": str(half)}, content=video[half:]
        )
        assert wrong_type.status_code == 415
        no_version = device.patch(
            location, headers={**PATCH_TYPE, "Upload-Offset": str(half)}, content=b"x"
        )
        assert no_version.status_code == 412
        assert no_version.headers["tus-version"] == "1.0.0"
        assert offset_of(device, location) == half

        last = send(device, location, half, video[half:])
        assert last.status_code == 204, last.text
        assert last.headers["upload-offset"] == str(len(video))
        vlog_id = last.headers["x-vlog-id"]
        vlog = viewer.get(f"/api/vlogs/{vlog_id}").json()
        assert (vlog["user_id"], vlog["title"], vlog["state"]) == (who, "Morning", "ready")
        assert vlog["sha256"] == hashlib.sha256(video).hexdigest()
        assert viewer.get(f"/api/vlogs/{vlog_id}/download").content == video
        # Sending the last part again changes nothing.
        assert offset_of(device, location) == len(video)


def test_a_refused_video_and_a_terminated_upload_leave_nothing(stack: Stack) -> None:
    who = f"P-{uuid.uuid4().hex[:10]}"
    notes = b"Dear diary, today I " * 300
    with stack.client("device") as device, stack.client("viewer") as viewer:
        location = create(device, len(notes), user_id=who, filename="notes.mp4")
        refused = send(device, location, 0, notes)
        assert refused.status_code == 415
        assert device.head(location, headers=TUS).status_code == 404
        assert viewer.get("/api/vlogs/count", params={"user_id": who}).json()["count"] == 0

        ended = create(device, 1000, user_id=who)
        assert send(device, ended, 0, b"\x00" * 400).status_code == 204
        assert device.delete(ended, headers=TUS).status_code == 204
        assert device.head(ended, headers=TUS).status_code == 404

        too_big = device.post("/api/vlogs/tus", headers={**TUS, "Upload-Length": str(10**12)})
        assert too_big.status_code == 413
        past_end = create(device, 10, user_id=who)
        assert send(device, past_end, 0, b"x" * 11).status_code == 413
        assert offset_of(device, past_end) == 0


def test_only_its_writer_continues_an_upload(stack: Stack) -> None:
    with stack.client("device") as device, stack.client("viewer") as viewer:
        location = create(device, 100, user_id=f"P-{uuid.uuid4().hex[:10]}")
        assert viewer.head(location, headers=TUS).status_code == 403
        with stack.client("admin") as admin:
            assert admin.head(location, headers=TUS).status_code == 404
            assert send(admin, location, 0, b"x").status_code == 404
        assert offset_of(device, location) == 0
