"""Real videos for the media tests: drawn with NumPy and OpenCV, written by OpenCV
(MPEG-4 Part 2, MJPEG, VP8) or encoded to H.264 with PyAV, as phones and the seed make them.

The `device` and `viewer` clients talk to the media app in process (tests/conftest.py
`in_process`) on the session's database; tests that stop or restart the service use
the stack."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from pymongo import MongoClient

from tests.conftest import RUNNING_APPS, Stack, in_process_client
from tests.support import REPO, wait_until

WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 30, 3
FRAMES = FPS * SECONDS
# Made once per machine and kept, keyed by this file's text and the clip's arguments:
# encoding (libx265 above all) is most of what the videos cost.
CACHE = REPO / ".cache" / "test-videos"
_THIS_FILE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cached(make: Callable[..., bytes]) -> Callable[..., bytes]:
    """`make(path, *args)` as before, from the cache when this clip was made already."""

    @functools.wraps(make)
    def made(path: Path, *args: Any, **kwargs: Any) -> bytes:
        key = hashlib.sha256(repr((make.__name__, args, sorted(kwargs.items()))).encode())
        kept = CACHE / f"{_THIS_FILE}-{key.hexdigest()[:16]}{path.suffix}"
        if kept.exists():
            path.write_bytes(kept.read_bytes())
            return path.read_bytes()
        data = make(path, *args, **kwargs)
        CACHE.mkdir(parents=True, exist_ok=True)
        # Whole or not at all, whichever test worker writes it first.
        partial = kept.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(kept)
        return data

    return made


def frames(seed: int) -> Iterator[np.ndarray]:
    """A coloured background, a moving circle and a frame counter, different per seed."""
    for n in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), ((seed * 40) % 255, 80, 160), np.uint8)
        cv2.circle(frame, (100 + 4 * n, 240), 30 + n % 20, (0, 0, 255), -1)
        cv2.putText(
            frame, f"{seed}:{n}", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3
        )
        yield frame


@cached
def opencv_video(path: Path, fourcc: str, seed: int) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened(), fourcc
    for frame in frames(seed):
        writer.write(frame)
    writer.release()
    return path.read_bytes()


@cached
def noise_video(path: Path) -> bytes:
    """MPEG-4 Part 2 of random pixels, which compress badly: several MiB, more than the
    gateway reads whole (1 MiB), and an H.264 preview of several MiB too."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    noise = np.random.default_rng(7)
    for _ in range(30):
        writer.write(noise.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


@cached
def h264_video(path: Path, seed: int, faststart: bool = False) -> bytes:
    """H.264 in MP4. With `faststart` its index comes before the frames, as phones and
    web encoders write it: a copy cut off part-way still opens and claims the full length."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in frames(seed):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode(None))
    return path.read_bytes()


@cached
def iphone_like_video(path: Path, seed: int) -> bytes:
    """HEVC in a QuickTime file with AAC sound, as iPhones record: no browser plays it."""
    with av.open(str(path), "w", format="mov") as container:
        picture = container.add_stream("libx265", rate=FPS, options={"log-level": "error"})
        picture.width, picture.height, picture.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = container.add_stream("aac", rate=44100)
        sound.layout = "mono"
        for frame in frames(seed):
            container.mux(picture.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        tone = (0.2 * np.sin(np.arange(1024) / 8)).astype(np.float32).reshape(1, -1)
        for n in range(SECONDS * 44100 // 1024):
            samples = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 44100, n * 1024
            container.mux(sound.encode(samples))
        container.mux(picture.encode(None))
        container.mux(sound.encode(None))
    return path.read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "h264": h264_video(folder / "h264.mp4", 1),
        "h264_faststart": h264_video(folder / "faststart.mp4", 6, faststart=True),
        "mpeg4": opencv_video(folder / "mpeg4.mp4", "mp4v", 2),
        "mjpeg_avi": opencv_video(folder / "mjpeg.avi", "MJPG", 3),
        "vp8_webm": opencv_video(folder / "vp8.webm", "VP80", 4),
        "hevc_mov": iphone_like_video(folder / "iphone.mov", 5),
    }


def upload(
    client: httpx.Client, user_id: str, data: bytes, name: str = "clip.mp4", **fields: str
) -> httpx.Response:
    return client.post(
        "/api/vlogs/upload",
        data={"user_id": user_id, **fields},
        files={"video": (name, data, "application/octet-stream")},
    )


def wait_for_previews(viewer: httpx.Client, timeout: float = 60) -> None:
    def none_pending() -> bool:
        listed = viewer.get("/api/vlogs", params={"limit": 1000}).json()
        return not any(v["preview_state"] == "pending" for v in listed)

    wait_until(none_pending, timeout, "the previews")


def assert_nothing_half_stored(stack: Stack, viewer: httpx.Client) -> None:
    """Every stored byte belongs to a finished vlog, and no temporary copy is left
    (once background previews, also of vlogs deleted meanwhile, have finished)."""
    wait_for_previews(viewer)
    # The stack's media process and the in-process media app both make previews.
    temp_dirs = [stack.config.data_dir / "tmp", *(app.temp_dir for app in RUNNING_APPS)]
    wait_until(
        lambda: not [p for d in temp_dirs if d for p in d.rglob("*") if p.is_file()],
        60,
        "temporary copies to be removed",
    )
    with MongoClient(stack.config.mongodb_uri) as client:
        database = client[stack.db_name]
        vlogs = list(
            database["vlogs"].find({}, {"state": 1, "storage_id": 1, "preview_storage_id": 1})
        )
        assert all(v["state"] == "ready" for v in vlogs)
        owned = {v.get(k) for v in vlogs for k in ("storage_id", "preview_storage_id")} - {None}
        files = set(database["videos.files"].distinct("_id"))
        chunked = set(database["videos.chunks"].distinct("files_id"))
    assert files == owned
    assert chunked <= files


device = in_process_client("media_app", "device", "device")
viewer = in_process_client("media_app", "viewer", "viewer")
