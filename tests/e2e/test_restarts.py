"""What a service promised survives its stop, its kill or its restart: audit entries
waiting in the gateway, entries journaled before a SIGKILL, a read served while the
admin service is down, tus offsets, stored videos, and daily rollups rebuilt when
ingest starts. These tests stop the processes of a stack of their own: the session's
stack, which other tests share, is never stopped."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil
from pymongo import MongoClient
from tusclient.client import TusClient

from tests.conftest import SESSION_ENV, Stack, stack_of_its_own
from tests.gateway.test_audit import entries_of, stored_entries
from tests.ingest.conftest import new_participant
from tests.ingest.test_read import store
from tests.media.conftest import h264_video, sha256, upload
from tests.media.test_resumable import PATCH_TYPE, TUS, create, offset_of, send
from tests.support import all_threads_stopped, bearer, wait_until

# `stack` here is a stack of its own, with the session's settings: these tests stop its
# processes.
stack = stack_of_its_own("emogo_restarts", **SESSION_ENV)
PARTICIPANT = f"P-restarts-{uuid.uuid4().hex[:8]}"


def restart(stack: Stack, service: str, kill: bool = False) -> None:
    """Stops `service` (SIGTERM, or SIGKILL when `kill`) and starts it again."""
    process = stack.supervisor.processes[service]
    process.kill() if kill else process.terminate()
    process.wait(15)
    stack.supervisor.start(service)
    stack.supervisor.wait_ready(service)


def a_viewer_token(stack: Stack, name: str) -> str:
    with stack.client("admin") as admin:
        minted = admin.post("/api/viewer-tokens", json={"name": name, "study_ids": ["default"]})
        assert minted.status_code == 201, minted.text
    token: str = minted.json()["token"]
    return token


def test_entries_waiting_at_shutdown_are_stored(stack: Stack) -> None:
    token = a_viewer_token(stack, "TA Shutdown")
    request_id = f"audit-{uuid.uuid4().hex}"
    with stack.client() as client:
        answer = client.get(
            "/api/gps",
            params={"user_id": PARTICIPANT},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
        )
        assert answer.status_code == 200
    # At once, before the next batch would go: stopping sends what is waiting.
    restart(stack, "gateway")
    assert len(stored_entries(stack, lambda entry: entry["request_id"] == request_id)) == 1


def test_a_read_while_the_admin_service_is_down_is_still_recorded(stack: Stack) -> None:
    """The services check issued tokens themselves, so a read can be served while the
    admin service (which names tokens, and keeps the trail) is down: its entry waits
    in the gateway and names the token by its digest."""
    token = a_viewer_token(stack, "TA Down")
    request_id = f"audit-{uuid.uuid4().hex}"
    admin_process = stack.supervisor.processes["admin"]
    admin_process.terminate()
    admin_process.wait(15)
    try:
        with stack.client() as client:
            answer = client.get(
                "/api/gps",
                params={"user_id": PARTICIPANT},
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
            )
        served = answer.status_code
    finally:
        stack.supervisor.start("admin")
        stack.supervisor.wait_ready("admin")
    assert served == 200
    (entry,) = entries_of(stack, request_id)
    assert entry["credential_id"] == "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    assert entry["role"] == "unresolved"
    assert token not in str(entry)


def test_reads_journaled_before_a_kill_are_all_stored(stack: Stack) -> None:
    """Audited reads answered while the admin service is frozen (so no entry can be
    sent), then a SIGKILL of the gateway: each entry was on the gateway's disk before its
    answer completed, and the next gateway sends them. Read with the environment's
    viewer token: an issued one needs the admin service to answer (a frozen one is 503)."""
    marker = uuid.uuid4().hex
    reads = 20
    admin_process = psutil.Process(stack.supervisor.processes["admin"].pid)
    admin_process.suspend()
    wait_until(all_threads_stopped(admin_process.pid), 30, "the admin service to stop")
    try:
        with stack.client() as client:
            for n in range(reads):
                answer = client.get(
                    "/api/sentiments/count",
                    params={"user_id": PARTICIPANT},
                    headers={**bearer("viewer"), "X-Request-ID": f"killed-{marker}-{n}"},
                )
                assert answer.status_code == 200
        gateway = stack.supervisor.processes["gateway"]
        gateway.kill()
        gateway.wait(15)
    finally:
        admin_process.resume()
    stack.supervisor.start("gateway")
    stack.supervisor.wait_ready("gateway")

    def kept(entry: dict) -> bool:
        return entry["request_id"].startswith(f"killed-{marker}-")

    wait_until(lambda: len(stored_entries(stack, kept)) >= reads, 30, "the journaled entries")
    found = stored_entries(stack, kept)
    assert sorted(e["request_id"] for e in found) == sorted(
        f"killed-{marker}-{n}" for n in range(reads)
    )
    with stack.client("admin") as admin:
        assert admin.get("/api/audit/verify").json()["ok"] is True


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
        restart(stack, "media")
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
        # Every answer speaks the protocol, refusals included.
        assert no_version.headers["tus-resumable"] == "1.0.0"
        assert device.head(f"{location}0", headers=TUS).headers["tus-resumable"] == "1.0.0"
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


def test_tuspy_uploads_in_chunks_and_resumes_after_the_service_dies(
    stack: Stack, tmp_path: Path
) -> None:
    """`tuspy`, a tus client nobody here wrote, through the gateway: a few chunks, the
    media service killed and restarted, then a new uploader for the same URL goes on
    where the server says and the vlog's download has the file's sha256."""
    path = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    noise = np.random.default_rng(11)
    for _ in range(30):
        writer.write(noise.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    writer.release()
    video = path.read_bytes()
    assert len(video) > 3 * 1024 * 1024
    who = f"P-{uuid.uuid4().hex[:10]}"
    chunk = 256 * 1024
    tus_client = TusClient(f"{stack.gateway}/api/vlogs/tus", headers=bearer("device"))
    details = {"user_id": who, "title": "tuspy", "filename": "noise.mp4"}
    # tuspy leaves a file it opens itself unclosed: it is given one to read.
    with path.open("rb") as stream:
        uploader = tus_client.uploader(file_stream=stream, chunk_size=chunk, metadata=details)
        uploader.upload_chunk()
        uploader.upload_chunk()
        assert uploader.offset == 2 * chunk

        restart(stack, "media", kill=True)

        # Larger chunks now: a request of several MiB is stored a piece at a time.
        resumed = tus_client.uploader(
            file_stream=stream, url=uploader.url, chunk_size=3 * 1024 * 1024
        )
        assert resumed.offset == 2 * chunk  # asked the server (HEAD), not remembered
        resumed.upload()
    with stack.client("viewer") as viewer:
        [vlog] = viewer.get("/api/vlogs", params={"user_id": who}).json()
        assert vlog["sha256"] == hashlib.sha256(video).hexdigest()
        downloaded = viewer.get(f"/api/vlogs/{vlog['_id']}/download").content
    assert hashlib.sha256(downloaded).hexdigest() == hashlib.sha256(video).hexdigest()


def test_videos_survive_a_restart_of_the_service(stack: Stack, tmp_path: Path) -> None:
    video = h264_video(tmp_path / "clip.mp4", 1)
    with stack.client("device") as device:
        vlog = upload(device, new_participant(), video).json()["vlog"]
    restart(stack, "media")
    with stack.client("viewer") as viewer:
        response = viewer.get(vlog["download_url"])
    assert response.status_code == 200
    assert sha256(response.content) == sha256(video)


def test_daily_rollups_agree_with_the_records_and_are_rebuilt(stack: Stack) -> None:
    participant = new_participant()
    with stack.client("device") as device:
        store_week(device, participant)
    with stack.client("viewer") as viewer:
        rebuilt_after_restarts(stack, viewer, participant)


def store_week(device: httpx.Client, participant: str) -> None:
    store(
        device,
        "sentiments",
        [
            {
                "user_id": participant,
                "emotion": ("happy", "sad")[i % 2],
                "intensity": (i % 7) / 7,
                "timestamp": f"2025-06-{1 + i % 4:02d}T{i % 24:02d}:30:00Z",
            }
            for i in range(40)
        ],
    )
    store(
        device,
        "gps",
        [
            {
                "user_id": participant,
                "latitude": 1,
                "longitude": 2,
                "timestamp": f"2025-06-0{d}T12:00:00Z",
            }
            for d in (1, 3)
        ],
    )


def rebuilt_after_restarts(stack: Stack, viewer: httpx.Client, participant: str) -> None:
    # Day-aligned windows are answered from the rollups; a window that starts one
    # second after midnight has to read the records. Both cover the same data.
    from_rollups = {"user_id": participant, "since": "2025-06-01"}
    from_records = {"user_id": participant, "since": "2025-05-31T00:00:01Z"}
    paths = (
        "/api/telemetry/summary",
        "/api/telemetry/timeline",
        "/api/telemetry/participants",
        f"/api/telemetry/participants/{participant}",
    )

    def answers(window: dict) -> list:
        return [viewer.get(path, params=window).json() for path in paths]

    expected = answers(from_records)
    assert answers(from_rollups) == expected
    assert expected[0]["sentiments"] == 40
    assert len(expected[1]) == 4  # one emotion per day in this data

    # Rollups lost (or data from before they existed): rebuilt when ingest starts.
    with MongoClient(stack.config.mongodb_uri) as client:
        client[stack.db_name]["telemetry_daily"].delete_many({})
    restart(stack, "ingest")
    assert answers(from_rollups) == expected

    # Rows of the version before studies (no `study`): recounted when ingest starts.
    with MongoClient(stack.config.mongodb_uri) as client:
        database = client[stack.db_name]
        old_row = {
            "kind": "sentiments",
            "user_id": participant,
            "day": "2025-06-02",
            "emotion": "happy",
            "records": 99,
            "intensity_sum": 9.0,
            "first": datetime(2025, 6, 2, tzinfo=UTC),
            "last": datetime(2025, 6, 2, tzinfo=UTC),
            "folded_to": datetime(2025, 6, 3, tzinfo=UTC),
        }
        database["telemetry_daily"].insert_one(old_row)
        database["telemetry_daily_state"].update_one({"_id": "rollups"}, {"$set": {"version": 1}})
    restart(stack, "ingest")
    assert answers(from_rollups) == expected
    with MongoClient(stack.config.mongodb_uri) as client:
        daily = client[stack.db_name]["telemetry_daily"]
        wait_until(
            lambda: daily.count_documents({"study": {"$exists": False}}) == 0,
            30,
            "the recount to replace the rows without a study",
        )
    assert answers(from_rollups) == expected
