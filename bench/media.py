"""Video throughput: upload and download MB/s through the gateway against raw GridFS.

Starts a throw-away stack (embedded SecantusDB, as `make run`) and builds a valid MP4
of the requested size: a short H.264 clip followed by a `free` box of random bytes,
which players and decoders skip, so the media service accepts it as a real video.
Then, alternating with the raw side in each round:
  - upload: `POST /api/vlogs/upload/raw` through the gateway, streamed from disk,
    against PyMongo `AsyncGridFSBucket.upload_from_stream` into the same database;
  - resumable upload: tus 1.0 in 8 MiB chunks through the gateway, against the seed's
    multipart form through the gateway;
  - download: `GET /api/vlogs/{id}/download` through the gateway against reading the
    same file from GridFS, with the time to first byte;
sampling the resident memory of the gateway and media processes throughout.

    .venv/bin/python bench/media.py [--mb 500] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import struct
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import numpy as np
from gridfs import AsyncGridFSBucket
from pymongo import AsyncMongoClient
from support import bearer, throwaway_stack

from tests.support import PeakMemory

MiB = 1024 * 1024
PIECE = MiB


def build_video(path: Path, total_bytes: int) -> None:
    """A 2-second H.264 MP4 padded to `total_bytes` with a top-level `free` box."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for n in range(60):
            picture = np.full((240, 320, 3), (n * 4) % 255, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    padding = total_bytes - path.stat().st_size - 8
    with path.open("ab") as out:
        out.write(struct.pack(">I", padding + 8) + b"free")
        while padding > 0:
            piece = os.urandom(min(PIECE, padding))  # random: nothing to compress
            out.write(piece)
            padding -= len(piece)


async def file_pieces(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while piece := source.read(PIECE):
            yield piece


async def gateway_upload(
    client: httpx.AsyncClient, path: Path, user_id: str, title: str = ""
) -> tuple[float, str]:
    """Seconds to upload `path` as the request body through the gateway, and the vlog id."""
    began = time.perf_counter()
    response = await client.post(
        "/api/vlogs/upload/raw",
        params={"user_id": user_id, "filename": path.name, "title": title},
        content=file_pieces(path),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    return time.perf_counter() - began, response.json()["id"]


async def gateway_form_upload(client: httpx.AsyncClient, path: Path, user_id: str) -> float:
    """Seconds to upload `path` with the seed's multipart form (httpx streams the file)."""
    began = time.perf_counter()
    with path.open("rb") as video:
        response = await client.post(
            "/api/vlogs/upload",
            data={"user_id": user_id, "title": "form"},
            files={"video": (path.name, video, "video/mp4")},
        )
    assert response.status_code == 201, response.text
    return time.perf_counter() - began


async def gateway_tus_upload(
    client: httpx.AsyncClient, path: Path, size: int, user_id: str, chunk: int = 8 * MiB
) -> float:
    """Seconds to upload `path` (`size` bytes) with tus 1.0 in `chunk`-sized PATCHes."""
    tus = {"Tus-Resumable": "1.0.0"}
    began = time.perf_counter()
    who = base64.b64encode(user_id.encode()).decode()
    created = await client.post(
        "/api/vlogs/tus",
        headers={**tus, "Upload-Length": str(size), "Upload-Metadata": f"user_id {who}"},
    )
    assert created.status_code == 201, created.text
    location, offset = created.headers["location"], 0
    with path.open("rb") as video:
        while offset < size:
            piece = video.read(chunk)
            answer = await client.patch(
                location,
                content=piece,
                headers={
                    **tus,
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                },
            )
            assert answer.status_code == 204, answer.text
            offset = int(answer.headers["upload-offset"])
    return time.perf_counter() - began


async def gateway_download(client: httpx.AsyncClient, vlog_id: str) -> tuple[float, float, int]:
    began = time.perf_counter()
    first_byte = None
    received = 0
    async with client.stream("GET", f"/api/vlogs/{vlog_id}/download") as response:
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            if first_byte is None:
                first_byte = time.perf_counter() - began
            received += len(piece)
    return time.perf_counter() - began, first_byte or 0.0, received


async def raw_upload(bucket: AsyncGridFSBucket, path: Path) -> tuple[float, object]:
    began = time.perf_counter()
    with path.open("rb") as source:
        file_id = await bucket.upload_from_stream("bench.mp4", source)
    return time.perf_counter() - began, file_id


async def raw_download(bucket: AsyncGridFSBucket, file_id: object) -> tuple[float, float, int]:
    began = time.perf_counter()
    stream = await bucket.open_download_stream(file_id)
    first_byte = None
    received = 0
    while piece := await stream.read(PIECE):
        if first_byte is None:
            first_byte = time.perf_counter() - began
        received += len(piece)
    return time.perf_counter() - began, first_byte or 0.0, received


async def run(config, gateway_pid: int, media_pid: int, path: Path, size: int, rounds: int) -> None:
    size_mb = size / MiB
    client = httpx.AsyncClient(
        base_url=config.url("gateway"), headers=bearer(config, "admin"), timeout=600
    )
    mongo = AsyncMongoClient(config.mongodb_uri)
    bucket = AsyncGridFSBucket(mongo["emogo"], bucket_name="bench", chunk_size_bytes=255 * 1024)
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "up/gateway",
            "up/raw",
            "down/gateway",
            "down/raw",
            "ttfb/gateway",
            "ttfb/raw",
            "up/form",
            "up/tus",
        )
    }
    with PeakMemory(gateway_pid) as gateway_memory, PeakMemory(media_pid) as media_memory:
        for round_number in range(1, rounds + 1):
            seconds, vlog_id = await gateway_upload(client, path, f"bench-{round_number}")
            results["up/gateway"].append(size_mb / seconds)
            seconds, file_id = await raw_upload(bucket, path)
            results["up/raw"].append(size_mb / seconds)
            seconds, ttfb, received = await gateway_download(client, vlog_id)
            assert received == size
            results["down/gateway"].append(size_mb / seconds)
            results["ttfb/gateway"].append(ttfb * 1000)
            seconds, ttfb, received = await raw_download(bucket, file_id)
            assert received == size
            results["down/raw"].append(size_mb / seconds)
            results["ttfb/raw"].append(ttfb * 1000)
            seconds = await gateway_form_upload(client, path, f"bench-form-{round_number}")
            results["up/form"].append(size_mb / seconds)
            seconds = await gateway_tus_upload(client, path, size, f"bench-tus-{round_number}")
            results["up/tus"].append(size_mb / seconds)
            print(
                f"round {round_number}: "
                + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()),
                flush=True,
            )
    await client.aclose()
    await mongo.close()
    median = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nvideo of {size_mb:.0f} MiB, median of {rounds} round(s)")
    for way in ("up", "down"):
        gateway, raw = median[f"{way}/gateway"], median[f"{way}/raw"]
        print(f"{way + 'load':8s} gateway {gateway:7.1f} MiB/s   raw GridFS {raw:7.1f} MiB/s")
    ttfb_gateway, ttfb_raw = median["ttfb/gateway"], median["ttfb/raw"]
    print(f"time to first byte: gateway {ttfb_gateway:.1f} ms, raw {ttfb_raw:.1f} ms")
    print(f"\nupload gateway/raw:   {median['up/gateway'] / median['up/raw']:.2f} (aim: >= 0.5)")
    print(f"download gateway/raw: {median['down/gateway'] / median['down/raw']:.2f} (aim: >= 0.5)")
    print(
        f"resumable (tus, 8 MiB chunks) {median['up/tus']:.1f} MiB/s, multipart form "
        f"{median['up/form']:.1f} MiB/s: tus/form {median['up/tus'] / median['up/form']:.2f} "
        "(aim: >= 0.8)"
    )
    for name, memory in (("gateway", gateway_memory), ("media", media_memory)):
        print(
            f"{name} RSS: idle {memory.baseline / MiB:.0f} MiB, peak {memory.peak / MiB:.0f} MiB "
            f"({(memory.peak - memory.baseline) / MiB:+.0f} MiB; aim: < +100)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=500, help="size of the video in MiB")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emogo-bench-video-") as folder:
        path = Path(folder) / "bench.mp4"
        build_video(path, args.mb * MiB)
        limit = str((args.mb + 64) * MiB)
        with throwaway_stack(EMOGO_MEDIA_MAX_UPLOAD_BYTES=limit) as (config, supervisor):
            asyncio.run(
                run(
                    config,
                    supervisor.processes["gateway"].pid,
                    supervisor.processes["media"].pid,
                    path,
                    path.stat().st_size,
                    args.rounds,
                )
            )


if __name__ == "__main__":
    main()
