"""Uploading a video as a phone on a poor network would: tus 1.0.0 in chunks, asking the
server where to go on after a connection drops (`python -m generators videos
--resumable`). `drop_at` cuts the connection once, part-way through a chunk, to show
the upload resuming from the bytes the server kept."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from tqdm import tqdm

from generators.client import Gateway, GeneratorError

TUS = {"Tus-Resumable": "1.0.0"}


class _Dropped(Exception):
    """The simulated loss of the connection."""


def _metadata(fields: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def upload_resumable(
    gateway: Gateway,
    path: Path,
    fields: dict[str, str],
    chunk_bytes: int,
    progress: Callable[[int], object],  # told how many bytes were sent; its answer is unused
    drop_at: float | None = None,
) -> bool:
    """Uploads `path`; returns whether the server had the same video already."""
    size = path.stat().st_size
    created = gateway.send(
        "POST",
        "/api/vlogs/tus",
        headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": _metadata(fields)},
    )
    if created.status_code != 201:
        raise GeneratorError(f"tus creation: {created.status_code} {created.text[:300]}")
    location = created.headers["location"]
    drop_after = int(size * drop_at) if drop_at is not None else None
    offset = conflicts = 0
    with path.open("rb") as video:
        while True:
            video.seek(offset)
            piece = video.read(chunk_bytes)
            cut = drop_after is not None and offset <= drop_after < offset + len(piece)
            try:
                answer = gateway.client.patch(
                    location,
                    headers={
                        **TUS,
                        "Content-Type": "application/offset+octet-stream",
                        "Upload-Offset": str(offset),
                        "Content-Length": str(len(piece)),
                    },
                    content=_body(
                        piece, drop_after - offset if drop_after is not None and cut else None
                    ),
                )
            except (httpx.TransportError, _Dropped) as lost:
                drop_after = None  # once is enough
                resumed = _server_offset(gateway, location)
                why = "cut on purpose" if isinstance(lost, _Dropped) else type(lost).__name__
                tqdm.write(
                    f"{path.name}: connection lost at byte {offset} ({why}); the server kept "
                    f"{resumed} bytes, resuming from there",
                    file=sys.stderr,
                )
                progress(resumed - offset)
                offset = resumed
                continue
            if answer.status_code == 409 and conflicts < 10:
                # The server has not yet let go of the request that was cut off.
                conflicts += 1
                time.sleep(0.5)
                offset = _server_offset(gateway, location)
                continue
            if answer.status_code != 204:
                raise GeneratorError(f"tus PATCH: {answer.status_code} {answer.text[:300]}")
            now_at = int(answer.headers["upload-offset"])
            progress(now_at - offset)
            offset = now_at
            if offset >= size:
                return answer.headers["x-vlog-duplicate"] == "true"


def _body(piece: bytes, stop_after: int | None) -> Iterator[bytes]:
    """The chunk in small pieces; with `stop_after`, the connection is cut there."""
    end = len(piece) if stop_after is None else stop_after
    for start in range(0, end, 64 * 1024):
        yield piece[start : min(start + 64 * 1024, end)]
    if stop_after is not None:
        raise _Dropped


def _server_offset(gateway: Gateway, location: str) -> int:
    """Where the server says the upload stands (what it has stored)."""
    answer = gateway.send("HEAD", location, headers=TUS)
    if answer.status_code != 200:
        raise GeneratorError(f"tus HEAD: {answer.status_code}")
    return int(answer.headers["upload-offset"])
