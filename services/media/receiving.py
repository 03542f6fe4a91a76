"""Receiving a video's bytes: `IncomingVideo` decides the type from the first bytes,
holds the size limit on the bytes received, computes the sha256 (and CRC-32) on the
way, sends the bytes to storage as they come, and keeps a temporary copy on local disk
for decoding. The seed's multipart form is parsed as it streams; a raw body is taken
as it is. Memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import ObjectId
from litestar import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.common.errors import (
    AppError,
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    field_error,
)
from services.common.validation import drain
from services.media import video
from services.media.models import VlogState, collection
from services.media.storage import StoredWriter, VideoStorage

logger = logging.getLogger("emogo.media")

FLUSH_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 10 * 1024
MAX_PARTS = 20
VIDEO_FIELD = "video"
NOT_A_VIDEO = (
    "The file is not a supported video: its bytes are not MP4/MOV, WebM/MKV or AVI "
    "(the file name and Content-Type are not trusted)"
)


@dataclass
class IncomingVideo:
    """One video's bytes on their way into storage."""

    storage: VideoStorage
    storage_id: ObjectId
    temp_dir: Path
    limit: int
    original_name: str
    # Records the upload (state `uploading`) once its bytes are known to be a video.
    on_start: Callable[[IncomingVideo], Awaitable[None]]
    vlog_id: ObjectId = field(default_factory=ObjectId)
    received: int = 0
    container: tuple[str, str, str] | None = None
    temp_path: Path | None = None
    _digest: Any = field(default_factory=hashlib.sha256)
    # CRC-32 too: ZIP exports can then store the video without reading it twice.
    crc32: int = 0
    _pending: bytearray = field(default_factory=bytearray)
    _writer: StoredWriter | None = None
    _temp: Any = None

    async def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit:
            raise PayloadTooLarge(
                f"The video is larger than the limit of {self.limit} bytes",
                extra={"limit": self.limit},
            )
        self._pending += data
        if self.container is None and len(self._pending) >= video.SIGNATURE_BYTES:
            await self._start()
        if len(self._pending) >= FLUSH_BYTES:
            await self._flush()

    async def _start(self) -> None:
        self.container = video.container_of(bytes(self._pending[: video.SIGNATURE_BYTES]))
        if self.container is None:
            raise UnsupportedMediaType(NOT_A_VIDEO)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        handle, name = await asyncio.to_thread(
            tempfile.mkstemp, suffix=self.container[2], dir=self.temp_dir
        )
        self.temp_path = Path(name)
        self._temp = open(handle, "wb")  # noqa: ASYNC230, SIM115 - written off the loop below
        await self.on_start(self)
        self._writer = await self.storage.open_writer(
            self.storage_id, self.original_name, {"content_type": self.container[1]}
        )

    async def _flush(self) -> None:
        data = bytes(self._pending)
        self._pending.clear()
        await asyncio.to_thread(self._keep, data)
        assert self._writer is not None
        await self._writer.write(data)

    def _keep(self, data: bytes) -> None:
        self._digest.update(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self._temp.write(data)

    async def finish(self) -> str:
        """Flushes what is left; returns the sha256 of the whole video."""
        if self.received == 0:
            raise field_error(VIDEO_FIELD, "is empty")
        if self.container is None:
            await self._start()
        await self._flush()
        await asyncio.to_thread(self._temp.close)
        assert self._writer is not None
        await self._writer.close()
        return self._digest.hexdigest()

    async def discard(self) -> None:
        """Removes every trace: the record, the stored bytes and the temporary copy."""
        await collection().delete_one({"_id": self.vlog_id, "state": VlogState.UPLOADING})
        if self._temp is not None and not self._temp.closed:
            await asyncio.to_thread(self._temp.close)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.abort()
        await self.storage.delete(self.storage_id)
        self.remove_temp()

    def remove_temp(self) -> None:
        if self.temp_path is not None:
            self.temp_path.unlink(missing_ok=True)


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    video: IncomingVideo | None = None


class _PartEvents:
    """python-multipart calls back synchronously; this queues what it saw so the
    upload can be handled with awaits between chunks."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.events.append(("headers", self._headers)),
            "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.events.append(("end", None)),
        }

    def _begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        # Part headers stay bytes-as-latin-1, as python-multipart's parser of their
        # options expects; names and file names are decoded as UTF-8 from those.
        name = self._field.decode("latin-1").lower()
        self._headers[name] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()


async def receive_multipart(
    request: Request, make_video: Callable[[str, dict[str, str]], IncomingVideo]
) -> UploadForm:
    """The seed's multipart form, streamed: text fields, and the `video` file part."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type == b"application/x-www-form-urlencoded":
        # A form without a file part is sent this way by most clients.
        raise field_error(VIDEO_FIELD, "is required: send a multipart/form-data form with it")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType(
            "Send the upload as multipart/form-data with the video in the field `video` "
            "(or the bytes alone to /api/vlogs/upload/raw)"
        )
    form = UploadForm()
    events = _PartEvents()
    parser = MultipartParser(boundary, events.callbacks())
    chunks = request.stream()
    current: tuple[str, str | None] | None = None
    text = bytearray()
    parts = 0
    try:
        async for chunk in chunks:
            _feed(parser, chunk)
            for kind, value in events.events:
                if kind == "headers":
                    parts += 1
                    if parts > MAX_PARTS:
                        raise BadRequest(f"The form has more than {MAX_PARTS} parts")
                    current = _part_name(value)
                    name, filename = current
                    if filename is not None:
                        if name != VIDEO_FIELD:
                            raise field_error(
                                name, "is not a field of this form: send the video in `video`"
                            )
                        if form.video is not None:
                            raise field_error(VIDEO_FIELD, "must be given once")
                        form.video = make_video(filename, form.fields)
                    text.clear()
                elif kind == "data" and current is not None:
                    if current[1] is not None and form.video is not None:
                        await form.video.write(value)
                    else:
                        text += value
                        if len(text) > MAX_FIELD_BYTES:
                            raise field_error(current[0], f"is longer than {MAX_FIELD_BYTES} bytes")
                elif kind == "end" and current is not None:
                    if current[1] is None:
                        form.fields[current[0]] = _field_text(current[0], text)
                    current = None
            events.events.clear()
        _feed(parser, None)
    except AppError:
        await drain(chunks)
        raise
    return form


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    """One chunk into the parser (None: the end); a malformed form is the client's
    problem (400), whatever part of it is wrong: boundary, part headers, their size."""
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except MultipartParseError as problem:
        raise BadRequest(f"The multipart/form-data body is malformed: {problem}") from None


def _field_text(name: str, value: bytearray) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise field_error(name, "is not valid UTF-8 text") from None


def _part_name(headers: dict[str, str]) -> tuple[str, str | None]:
    _, options = parse_options_header(headers.get("content-disposition", ""))
    try:
        name = options.get(b"name", b"").decode("utf-8")
        filename = options.get(b"filename")
        return name, filename.decode("utf-8") if filename is not None else None
    except UnicodeDecodeError:
        raise BadRequest("A part's name or file name is not valid UTF-8") from None


async def receive_raw(request: Request, incoming: IncomingVideo) -> None:
    chunks = request.stream()
    try:
        async for chunk in chunks:
            await incoming.write(chunk)
    except AppError:
        await drain(chunks)
        raise
