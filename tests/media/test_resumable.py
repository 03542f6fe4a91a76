"""Resumable uploads (tus 1.0.0) through the gateway: an upload goes on where it
stopped and ends as an ordinary vlog; the protocol's refusals are the ones the
specification names. (After a restart or a kill of the media service:
tests/e2e/test_restarts.py.)"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright
from pymongo import MongoClient
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from tests.conftest import Stack
from tests.media.conftest import assert_nothing_half_stored, h264_video
from tests.support import REPO, TOKENS, bearer

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
        # No stored byte without its vlog, no temporary copy on disk.
        assert_nothing_half_stored(stack, viewer)


def test_only_its_writer_continues_an_upload(stack: Stack) -> None:
    with stack.client("device") as device, stack.client("viewer") as viewer:
        location = create(device, 100, user_id=f"P-{uuid.uuid4().hex[:10]}")
        assert viewer.head(location, headers=TUS).status_code == 403
        with stack.client("admin") as admin:
            assert admin.head(location, headers=TUS).status_code == 404
            assert send(admin, location, 0, b"x").status_code == 404
        assert offset_of(device, location) == 0


def digest_header(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def test_checksums_first_bytes_expiry_and_a_second_upload_of_the_same_video(
    stack: Stack, tmp_path: Path
) -> None:
    video = h264_video(tmp_path / "twice.mp4", 32)
    who = f"P-{uuid.uuid4().hex[:10]}"
    with stack.client("device") as device, stack.client("admin") as admin:
        # creation-with-upload: the first bytes come with the POST, checked by sha256.
        first_part = video[:1000]
        created = device.post(
            "/api/vlogs/tus",
            headers={
                **TUS,
                **PATCH_TYPE,
                "Upload-Length": str(len(video)),
                "Upload-Metadata": metadata(user_id=who, filename="twice.mp4"),
                "Upload-Checksum": digest_header("sha256", first_part),
            },
            content=first_part,
        )
        assert created.status_code == 201, created.text
        assert created.headers["upload-offset"] == "1000"
        assert "GMT" in created.headers["upload-expires"]
        location = created.headers["location"]

        # checksum: a mismatch is 460 and keeps nothing; an unknown algorithm is 400.
        rest = video[1000:]
        wrong = {**TUS, **PATCH_TYPE, "Upload-Offset": "1000"}
        bad = device.patch(
            location,
            headers={**wrong, "Upload-Checksum": digest_header("sha1", b"other")},
            content=rest,
        )
        assert bad.status_code == 460
        assert offset_of(device, location) == 1000
        odd = device.patch(location, headers={**wrong, "Upload-Checksum": "md5 AAAA"}, content=rest)
        assert odd.status_code == 400
        done = device.patch(
            location,
            headers={**wrong, "Upload-Checksum": digest_header("sha1", rest)},
            content=rest,
        )
        assert done.status_code == 204, done.text
        first_id = done.headers["x-vlog-id"]

        # The same bytes again, in one go: the existing vlog.
        again = create(device, len(video), user_id=who, filename="twice.mp4")
        repeated = send(device, again, 0, video)
        assert repeated.status_code == 204
        assert repeated.headers["x-vlog-id"] == first_id

        # expiration: an upload past its time is 410, and the clean-up removes its bytes.
        left = create(device, 5000, user_id=who)
        assert send(device, left, 0, b"\x00" * 3000).status_code == 204
        upload_id = left.rsplit("/", 1)[1]
        with MongoClient(stack.config.mongodb_uri) as mongo:
            database = mongo[stack.db_name]
            storage_id = database["tus_uploads"].find_one({"_id": upload_id})["storage_id"]
            assert database["videos.chunks"].count_documents({"files_id": storage_id}) == 1
            database["tus_uploads"].update_one(
                {"_id": upload_id}, {"$set": {"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}}
            )
            assert device.head(left, headers=TUS).status_code == 410
            cleaned = admin.post("/api/vlogs/maintenance/cleanup")
            assert cleaned.json()["removed_uploads"] >= 1
            assert database["videos.chunks"].count_documents({"files_id": storage_id}) == 0
            assert database["tus_uploads"].count_documents({"_id": upload_id}) == 0
        assert device.head(left, headers=TUS).status_code == 404
    with stack.client("viewer") as viewer:
        assert_nothing_half_stored(stack, viewer)  # nor the checked requests' spool files


TUS_JS_CLIENT = REPO / ".cache" / "tus-js-client" / "4.3.1" / "tus.min.js"


@pytest.mark.browser
def test_tus_js_client_uploads_from_a_browser(stack: Stack, tmp_path: Path) -> None:
    """tus-js-client's browser build (from npm) in Debian's chromium, in chunks, as a web
    app would; the stored video is the file, byte for byte."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run scripts/ensure-chromium (make test does)"
    assert TUS_JS_CLIENT.exists(), "run scripts/ensure-tus-js-client (make test does)"
    video = h264_video(tmp_path / "browser.mp4", 33)
    who = f"P-{uuid.uuid4().hex[:10]}"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        try:
            # A web app's page on the gateway's origin: the gateway's own pages allow no
            # script but theirs, so the test's copy of tus-js-client passes their policy.
            page = browser.new_page(bypass_csp=True)
            page.goto(f"{stack.gateway}/")
            page.add_script_tag(path=str(TUS_JS_CLIENT))
            uploaded = page.evaluate(
                """async ({bytes, token, who}) => {
                    const data = Uint8Array.from(atob(bytes), c => c.charCodeAt(0));
                    const file = new Blob([data], {type: "video/mp4"});
                    let chunks = 0;
                    const url = await new Promise((resolve, reject) => {
                        const upload = new tus.Upload(file, {
                            endpoint: location.origin + "/api/vlogs/tus",
                            headers: {Authorization: "Bearer " + token},
                            chunkSize: 4000,
                            metadata: {user_id: who, title: "From a browser", filename: "b.mp4"},
                            onChunkComplete: () => { chunks += 1; },
                            onError: (error) => reject(String(error)),
                            onSuccess: () => resolve(upload.url),
                        });
                        upload.start();
                    });
                    return {url, chunks};
                }""",
                {
                    "bytes": base64.b64encode(video).decode(),
                    "token": TOKENS["device"],
                    "who": who,
                },
            )
        finally:
            browser.close()
    assert uploaded["url"].startswith(f"{stack.gateway}/api/vlogs/tus/")
    assert uploaded["chunks"] == -(-len(video) // 4000)
    with stack.client("viewer") as viewer:
        [vlog] = viewer.get("/api/vlogs", params={"user_id": who}).json()
        assert vlog["title"] == "From a browser"
        assert vlog["sha256"] == hashlib.sha256(video).hexdigest()


class CuttingProxy:
    """A TCP proxy in front of the gateway that, once armed, cuts the client's connection
    after passing on `cut_after` more bytes of its request: a phone losing its network
    in the middle of a chunk."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_after: int | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, request: bool) -> None:
        try:
            while data := source.recv(65536):
                if request and self.cut_after is not None:
                    if len(data) >= self.cut_after:
                        target.sendall(data[: self.cut_after])
                        self.cut_after, self.cuts = None, self.cuts + 1
                        raise OSError("cut")
                    self.cut_after -= len(data)
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_tuspy_resumes_after_its_connection_is_cut_mid_chunk(stack: Stack, tmp_path: Path) -> None:
    video = h264_video(tmp_path / "cut.mp4", 34)
    who = f"P-{uuid.uuid4().hex[:10]}"
    proxy = CuttingProxy(int(stack.gateway.rsplit(":", 1)[1]))
    chunk = 8 * 1024
    try:
        tus_client = TusClient(
            f"http://127.0.0.1:{proxy.port}/api/vlogs/tus", headers=bearer("device")
        )
        with (tmp_path / "cut.mp4").open("rb") as stream:
            uploader = tus_client.uploader(
                file_stream=stream,
                chunk_size=chunk,
                metadata={"user_id": who, "filename": "cut.mp4"},
            )
            uploader.upload_chunk()
            proxy.cut_after = 2000  # into the next request: its headers and some bytes
            with pytest.raises(TusCommunicationError):
                uploader.upload_chunk()
            assert proxy.cuts == 1
            # Until the server has seen the cut request end, it refuses another (409):
            # the client tries again shortly, as tus clients do.
            resumed = tus_client.uploader(
                file_stream=stream, url=uploader.url, chunk_size=chunk, retries=10, retry_delay=1
            )
            assert resumed.offset == chunk  # what the server kept
            resumed.upload()
    finally:
        proxy.close()
    with stack.client("viewer") as viewer:
        [vlog] = viewer.get("/api/vlogs", params={"user_id": who}).json()
        assert vlog["sha256"] == hashlib.sha256(video).hexdigest()
