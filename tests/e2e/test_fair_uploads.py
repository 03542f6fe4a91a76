"""Uploads shared fairly (services.media.slots and the resumable uploads' limits),
through the gateway to real processes: four writers trickling uploads once held every
upload place for as long as they lasted (days, for a large body), so every other
upload got 429; and one writer could open a hundred resumable uploads of 512 MiB."""

from __future__ import annotations

import base64
import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack, stack_of_its_own
from tests.media.conftest import h264_video
from tests.support import enrolled, wait_until

# Four times the connections' minimum body rate (1 KiB/s, which a busy machine's
# scheduling must not push a trickle under), an eighth of an upload's (32 KiB/s).
TRICKLE_BYTES_PER_SECOND = 4096

fair_stack = stack_of_its_own(
    "emogo_fair_uploads",
    EMOGO_MEDIA_UPLOAD_GRACE_SECONDS="5",
    EMOGO_MEDIA_OPEN_RESUMABLE_PER_WRITER="3",
    EMOGO_ENROLMENT_ATTEMPTS_PER_ADDRESS="10000",
)


class Trickle(threading.Thread):
    """A raw upload of a large declared body, sent at TRICKLE_BYTES_PER_SECOND until
    the server answers (or `stop`)."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.stop = threading.Event()
        self.status_line = ""

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(
                b"POST /api/vlogs/upload/raw?filename=slow.mp4 HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + self.token.encode() + b"\r\n"
                b"Content-Type: video/mp4\r\nContent-Length: 100000000\r\n\r\n"
            )
            sock.settimeout(1.0)
            while not self.stop.is_set():
                try:
                    sock.sendall(b"\0" * TRICKLE_BYTES_PER_SECOND)
                    answer = sock.recv(200)
                except TimeoutError:
                    continue
                except OSError:
                    self.status_line = self.status_line or "closed"
                    return
                self.status_line = answer.split(b"\r\n", 1)[0].decode() or "closed"
                return


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


def test_four_trickling_writers_do_not_keep_a_fifth_out(fair_stack: Stack, tmp_path: Path) -> None:
    study_id = f"fair-{uuid.uuid4().hex[:8]}"
    with fair_stack.client("admin") as admin:
        assert admin.post("/api/studies", json={"study_id": study_id, "name": "F"}).is_success
    phones = enrolled(fair_stack, study_id, [f"p{n}" for n in range(5)])
    port = fair_stack.config.ports["gateway"]
    trickles = [Trickle(port, _token(phones[f"p{n}"])) for n in range(4)]
    for trickle in trickles:
        trickle.start()
    video = h264_video(tmp_path / "fifth.mp4", 5)
    try:
        with httpx.Client(base_url=fair_stack.gateway, headers=phones["p4"], timeout=60) as fifth:

            def probe() -> int:
                # Not a video: a free place answers 415 at once and is free again.
                return fifth.post(
                    "/api/vlogs/upload/raw", content=b"not a video", params={"filename": "x"}
                ).status_code

            # Every place is held by a trickle (within its first seconds, not judged).
            wait_until(lambda: probe() == 429, 20, "the trickles to hold every place")
            answers: list[int] = []

            def uploaded() -> bool:
                answer = fifth.post(
                    "/api/vlogs/upload", files={"video": ("fifth.mp4", video, "video/mp4")}
                )
                answers.append(answer.status_code)
                return answer.status_code == 201

            wait_until(uploaded, 20, "the fifth upload to take a trickle's place")
        assert set(answers) <= {429, 201}
        wait_until(lambda: any(t.status_line for t in trickles), 20, "a trickle to be told to stop")
        cut = [t.status_line for t in trickles if t.status_line]
        assert any(" 408 " in line for line in cut), cut
    finally:
        for trickle in trickles:
            trickle.stop.set()
        for trickle in trickles:
            trickle.join(5)


def _metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


TUS = {"Tus-Resumable": "1.0.0"}


def test_one_writer_keeps_a_bounded_number_of_resumable_uploads_open(fair_stack: Stack) -> None:
    study_id = f"tus-{uuid.uuid4().hex[:8]}"
    with fair_stack.client("admin") as admin:
        assert admin.post("/api/studies", json={"study_id": study_id, "name": "T"}).is_success
    phones = enrolled(fair_stack, study_id, ["t1", "t2"])
    with httpx.Client(base_url=fair_stack.gateway, timeout=60) as client:
        opened = []
        for _ in range(3):
            answer = client.post(
                "/api/vlogs/tus", headers={**phones["t1"], **TUS, "Upload-Length": "1000"}
            )
            assert answer.status_code == 201, answer.text
            opened.append(answer.headers["location"])
        refused = client.post(
            "/api/vlogs/tus", headers={**phones["t1"], **TUS, "Upload-Length": "1000"}
        )
        assert refused.status_code == 429
        assert "unfinished uploads" in refused.json()["detail"]["error"]
        # Another writer is not held back by the first one's uploads.
        other = client.post(
            "/api/vlogs/tus", headers={**phones["t2"], **TUS, "Upload-Length": "1000"}
        )
        assert other.status_code == 201
        # Ending one makes room again.
        assert client.delete(opened[0], headers={**phones["t1"], **TUS}).status_code == 204
        again = client.post(
            "/api/vlogs/tus", headers={**phones["t1"], **TUS, "Upload-Length": "1000"}
        )
        assert again.status_code == 201
        for location in [*opened[1:], again.headers["location"], other.headers["location"]]:
            owner = phones["t2"] if location == other.headers["location"] else phones["t1"]
            client.delete(location, headers={**owner, **TUS})


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"timestamp": "not a time"}, "timestamp"), ({"title": "diary\x00"}, "title")],
)
def test_resumable_metadata_is_checked_at_creation(
    fair_stack: Stack, fields: dict[str, str], field: str
) -> None:
    """Refused before any byte is sent, not after the last one."""
    with fair_stack.client("device") as device:
        answer = device.post(
            "/api/vlogs/tus",
            headers={
                **TUS,
                "Upload-Length": "1000",
                "Upload-Metadata": _metadata(user_id="meta-check", **fields),
            },
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]["errors"][0]["field"] == field
