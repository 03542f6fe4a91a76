"""What the media service does: receive videos, describe them, serve them, tidy up.

An upload streams through `IncomingVideo`: the type is decided from the first bytes,
the size limit holds on the bytes received, the sha256 is computed on the way, the
bytes go to storage as they come, and a temporary copy on local disk lets OpenCV
decode the file afterwards (removed when done). Memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import tempfile
import unicodedata
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from bson import ObjectId
from litestar import Request
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.common.errors import (
    AppError,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    field_error,
)
from services.common.pagination import Order, fetch_page
from services.common.schemas import utc_now
from services.common.timestamps import recorded_at, stored_now
from services.common.validation import convert_record, drain
from services.media import video
from services.media.models import PreviewState, Vlog, VlogState
from services.media.schemas import DeletedVlogs, ParticipantVlogs, UploadFields, VlogOut
from services.media.settings import MediaSettings
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
# What listings read: everything but the thumbnail bytes.
WITHOUT_THUMBNAIL = {"thumbnail": 0}


def collection() -> AsyncCollection:
    return Vlog.get_pymongo_collection()


# --- names --------------------------------------------------------------------------


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


def sanitize_name(name: str, limit: int = 120, *, is_path: bool = True) -> str:
    """A file name safe anywhere, without control characters, quotes or separators,
    NFC-normalised and bounded. Of a path (what clients send as a file name) only the
    last segment counts; other text (a title) keeps its words."""
    base = re.split(r"[/\\]", name)[-1] if is_path else name
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", base)).strip(" ._")
    return cleaned[:limit]


def download_name(vlog: dict[str, Any], extension: str) -> str:
    """A readable name for a download: the title, else the original name, else the id."""
    stem = sanitize_name(vlog.get("title") or "", 80, is_path=False)
    if not stem:
        stem = sanitize_name(Path(vlog.get("original_name") or "").stem, 80)
    return f"{stem or 'vlog-' + str(vlog['_id'])}{extension}"


# --- the wire form ------------------------------------------------------------------


def extension_of(vlog: dict[str, Any]) -> str:
    for name, _, extension in (video.MP4, video.MOV, video.WEBM, video.MKV, video.AVI):
        if vlog.get("container") == name:
            return extension
    return ".mp4"


def to_wire(vlog: dict[str, Any]) -> VlogOut:
    vlog_id = str(vlog["_id"])
    has_file = bool(vlog.get("has_file"))
    stored = has_file and vlog.get("state") == VlogState.READY
    playable = bool(
        stored
        and (
            video.is_browser_playable(vlog.get("container") or "", vlog.get("codec") or "")
            or vlog.get("preview_state") == PreviewState.READY
        )
    )
    base = f"/api/vlogs/{vlog_id}"
    return VlogOut(
        id=vlog_id,
        user_id=vlog["user_id"],
        title=vlog.get("title") or "",
        description=vlog.get("description") or "",
        timestamp=vlog["timestamp"],
        uploaded_at=vlog["uploaded_at"],
        state=vlog["state"],
        has_file=has_file,
        video_url=(
            f"/api/vlogs/download/{vlog_id}{extension_of(vlog)}"
            if has_file
            else vlog.get("video_url")
        ),
        download_url=f"{base}/download" if stored else None,
        play_url=f"{base}/play" if stored else None,
        thumbnail_url=f"{base}/thumbnail" if stored else None,
        file_size=vlog.get("size"),
        original_name=vlog.get("original_name"),
        content_type=vlog.get("content_type"),
        container=vlog.get("container"),
        sha256=vlog.get("sha256"),
        crc32=vlog.get("crc32"),
        duration=vlog.get("duration"),
        width=vlog.get("width"),
        height=vlog.get("height"),
        fps=vlog.get("fps"),
        codec=vlog.get("codec"),
        browser_playable=playable,
        preview_state=vlog.get("preview_state") or PreviewState.NOT_NEEDED,
    )


def parse_vlog_id(value: str) -> ObjectId:
    """An id, also as the seed's download file name (`<id>.mp4`)."""
    candidate = value.rsplit(".", 1)[0] if "." in value else value
    if not ObjectId.is_valid(candidate):
        raise field_error("id", "must be a 24-character hexadecimal vlog id")
    return ObjectId(candidate)


async def get_vlog(vlog_id: ObjectId, *, with_thumbnail: bool = False) -> dict[str, Any]:
    projection = None if with_thumbnail else WITHOUT_THUMBNAIL
    vlog = await collection().find_one({"_id": vlog_id}, projection)
    if vlog is None:
        raise NotFound(f"No vlog with id {vlog_id}")
    return vlog


# --- receiving bytes ----------------------------------------------------------------


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


# --- uploads ------------------------------------------------------------------------


def check_details(fields: dict[str, str]) -> UploadFields:
    """The form's text fields, checked like every other record, titles trimmed."""
    details = convert_record(fields, UploadFields)
    return msgspec.structs.replace(
        details,
        title=details.title.strip(),
        description=details.description.strip(),
        timestamp=details.timestamp or None,
    )


class Uploads:
    """Receives uploads, at most `max_concurrent_uploads` at once."""

    def __init__(self, settings: MediaSettings, storage: VideoStorage, previews: PreviewWorker):
        self.settings = settings
        self.storage = storage
        self.previews = previews
        self._slots = asyncio.Semaphore(settings.max_concurrent_uploads)

    def _incoming(self, original_name: str, fields: dict[str, str]) -> IncomingVideo:
        async def record_upload(incoming: IncomingVideo) -> None:
            # The participant may only be known once the whole form has arrived.
            now = stored_now()
            assert incoming.container is not None
            await Vlog(
                id=incoming.vlog_id,
                user_id=fields.get("user_id", ""),
                timestamp=now,
                uploaded_at=now,
                state=VlogState.UPLOADING,
                has_file=True,
                storage_id=incoming.storage_id,
                original_name=incoming.original_name,
                content_type=incoming.container[1],
                container=incoming.container[0],
            ).insert()

        return IncomingVideo(
            storage=self.storage,
            storage_id=ObjectId(),
            temp_dir=self.settings.temp_dir,
            limit=self.settings.max_upload_bytes,
            original_name=sanitize_name(original_name) or "video",
            on_start=record_upload,
        )

    async def upload(
        self,
        receive: Callable[[Callable[[str, dict[str, str]], IncomingVideo]], Awaitable[UploadForm]],
    ) -> tuple[dict[str, Any], bool]:
        """(the vlog, whether it already existed) for an upload `receive` reads."""
        if self._slots.locked():
            raise TooManyRequests(
                "Too many uploads in progress; retry shortly", headers={"Retry-After": "10"}
            )
        async with self._slots:
            incoming: IncomingVideo | None = None

            def make_video(name: str, fields: dict[str, str]) -> IncomingVideo:
                nonlocal incoming
                incoming = self._incoming(name, fields)
                return incoming

            try:
                form = await receive(make_video)
                if form.video is None:
                    raise field_error(VIDEO_FIELD, "is required: send the video file in `video`")
                details = check_details(form.fields)
                return await self._store(form.video, details)
            except BaseException:
                if incoming is not None:
                    # What a failed discard leaves, the periodic clean-up removes.
                    with contextlib.suppress(Exception):
                        await incoming.discard()
                raise

    async def _store(
        self, incoming: IncomingVideo, details: UploadFields
    ) -> tuple[dict[str, Any], bool]:
        now = stored_now()
        recorded = recorded_at(details.timestamp, now)
        sha256 = await incoming.finish()
        existing = await collection().find_one(
            {"user_id": details.user_id, "sha256": sha256}, WITHOUT_THUMBNAIL
        )
        if existing is not None:
            await incoming.discard()
            return existing, True
        assert incoming.temp_path is not None
        assert incoming.container is not None
        try:
            facts = await asyncio.to_thread(video.probe, incoming.temp_path)
        except video.UndecodableVideo as problem:
            raise field_error(VIDEO_FIELD, f"does not decode as a video: {problem}") from None
        container = incoming.container[0]
        playable = video.is_browser_playable(container, facts.codec)
        ready = {
            "user_id": details.user_id,
            "title": details.title,
            "description": details.description,
            "timestamp": recorded,
            "uploaded_at": now,
            "state": VlogState.READY,
            "size": incoming.received,
            "sha256": sha256,
            "crc32": incoming.crc32,
            "duration": facts.duration,
            "width": facts.width,
            "height": facts.height,
            "fps": facts.fps,
            "codec": facts.codec,
            "thumbnail": facts.thumbnail,
            "preview_state": PreviewState.NOT_NEEDED if playable else PreviewState.PENDING,
        }
        try:
            await collection().update_one({"_id": incoming.vlog_id}, {"$set": ready})
        except DuplicateKeyError:
            # The same bytes finished uploading a moment ago in another request.
            await incoming.discard()
            existing = await collection().find_one(
                {"user_id": details.user_id, "sha256": sha256}, WITHOUT_THUMBNAIL
            )
            if existing is None:
                raise
            return existing, True
        stored = await get_vlog(incoming.vlog_id)
        if playable:
            incoming.remove_temp()
        else:
            self.previews.submit(incoming.vlog_id, incoming.temp_path)
        return stored, False


async def create_link(fields: dict[str, Any]) -> dict[str, Any]:
    now = stored_now()
    vlog = Vlog(
        user_id=fields["user_id"],
        title=fields["title"].strip(),
        description=fields["description"].strip(),
        timestamp=recorded_at(fields["timestamp"], now),
        uploaded_at=now,
        state=VlogState.READY,
        has_file=False,
        video_url=fields["video_url"],
        duration=fields["duration"],
    )
    await vlog.insert()
    return await get_vlog(vlog.id)


def clear_temp_dir(temp_dir: Path) -> None:
    if temp_dir.is_dir():
        for leftover in temp_dir.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)


# --- previews -----------------------------------------------------------------------


class PreviewWorker:
    """Makes H.264 previews in the background, one at a time (it is CPU-bound)."""

    def __init__(self, settings: MediaSettings, storage: VideoStorage) -> None:
        self.settings = settings
        self.storage = storage
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = asyncio.Semaphore(1)

    def submit(self, vlog_id: Any, source: Path | None) -> None:
        task = asyncio.create_task(self._run(ObjectId(str(vlog_id)), source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """Previews a restart interrupted."""
        pending = collection().find(
            {"preview_state": PreviewState.PENDING, "state": VlogState.READY}, {"_id": 1}
        )
        async for vlog in pending:
            self.submit(vlog["_id"], None)

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, vlog_id: ObjectId, source: Path | None) -> None:
        target = None
        try:
            async with self._turn:
                vlog = await collection().find_one({"_id": vlog_id}, WITHOUT_THUMBNAIL)
                if vlog is None or vlog.get("preview_state") != PreviewState.PENDING:
                    return
                if source is None or not await asyncio.to_thread(source.exists):
                    source = await self._fetch(vlog)
                target = source.with_suffix(".preview.mp4")
                await asyncio.to_thread(
                    video.make_preview, source, target, self.settings.preview_max_height
                )
                preview_id = ObjectId()
                writer = await self.storage.open_writer(
                    preview_id, f"{vlog_id}.preview.mp4", {"content_type": "video/mp4"}
                )
                size = 0
                with target.open("rb") as preview:
                    while piece := preview.read(FLUSH_BYTES):
                        size += len(piece)
                        await writer.write(piece)
                await writer.close()
                updated = await collection().update_one(
                    {"_id": vlog_id, "preview_state": PreviewState.PENDING},
                    {
                        "$set": {
                            "preview_state": PreviewState.READY,
                            "preview_storage_id": preview_id,
                            "preview_size": size,
                        }
                    },
                )
                if not updated.modified_count:  # deleted meanwhile
                    await self.storage.delete(preview_id)
                logger.info("preview ready", extra={"vlog_id": str(vlog_id), "bytes": size})
        except asyncio.CancelledError:
            raise
        except Exception as problem:
            logger.warning("preview failed", extra={"vlog_id": str(vlog_id), "error": str(problem)})
            await collection().update_one(
                {"_id": vlog_id},
                {
                    "$set": {
                        "preview_state": PreviewState.FAILED,
                        "preview_error": str(problem)[:300],
                    }
                },
            )
        finally:
            for path in (source, target):
                if path is not None:
                    path.unlink(missing_ok=True)

    async def _fetch(self, vlog: dict[str, Any]) -> Path:
        """A temporary local copy of a stored original, for decoding."""
        self.settings.temp_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(suffix=extension_of(vlog), dir=self.settings.temp_dir)
        with open(handle, "wb") as copy:  # noqa: ASYNC230 - local temp file
            async for piece in self.storage.read_range(vlog["storage_id"], 0, vlog["size"] - 1):
                await asyncio.to_thread(copy.write, piece)
        return Path(name)


# --- listing, editing, deleting -----------------------------------------------------


async def list_page(
    query: dict[str, Any], order: Order, limit: int, cursor: str | None
) -> tuple[list[VlogOut], str | None]:
    vlogs, next_cursor = await fetch_page(
        collection(), query, order, limit, cursor, WITHOUT_THUMBNAIL
    )
    return [to_wire(v) for v in vlogs], next_cursor


async def count(query: dict[str, Any]) -> tuple[int, int]:
    rows = await (
        await collection().aggregate(
            [
                {"$match": query},
                {"$group": {"_id": None, "n": {"$sum": 1}, "bytes": {"$sum": "$size"}}},
            ]
        )
    ).to_list()
    return (rows[0]["n"], rows[0]["bytes"] or 0) if rows else (0, 0)


async def participants(query: dict[str, Any]) -> list[ParticipantVlogs]:
    rows = await (
        await collection().aggregate(
            [
                {"$match": query},
                {
                    "$group": {
                        "_id": "$user_id",
                        "n": {"$sum": 1},
                        "bytes": {"$sum": "$size"},
                        "duration": {"$sum": "$duration"},
                        "first": {"$min": "$timestamp"},
                        "last": {"$max": "$timestamp"},
                    }
                },
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    return [
        ParticipantVlogs(
            user_id=row["_id"],
            vlogs=row["n"],
            total_bytes=row["bytes"] or 0,
            total_duration=round(row["duration"] or 0.0, 3),
            first_recorded=row["first"],
            last_recorded=row["last"],
        )
        for row in rows
    ]


async def edit(vlog_id: ObjectId, changes: dict[str, str]) -> dict[str, Any]:
    if changes:
        await collection().update_one({"_id": vlog_id}, {"$set": changes})
    return await get_vlog(vlog_id)


async def _remove(storage: VideoStorage, vlogs: list[dict[str, Any]]) -> int:
    """Deletes vlogs and every byte they own; returns the bytes freed."""
    freed = 0
    for vlog in vlogs:
        await collection().delete_one({"_id": vlog["_id"]})
        for key in ("storage_id", "preview_storage_id"):
            if vlog.get(key) is not None:
                await storage.delete(vlog[key])
        freed += (vlog.get("size") or 0) + (vlog.get("preview_size") or 0)
    return freed


async def delete_one(storage: VideoStorage, vlog_id: ObjectId) -> DeletedVlogs:
    vlog = await get_vlog(vlog_id)
    freed = await _remove(storage, [vlog])
    return DeletedVlogs(user_id=vlog["user_id"], vlogs=1, bytes=freed)


async def delete_participant(storage: VideoStorage, user_id: str) -> DeletedVlogs:
    vlogs = await collection().find({"user_id": user_id}, WITHOUT_THUMBNAIL).to_list()
    freed = await _remove(storage, vlogs)
    return DeletedVlogs(user_id=user_id, vlogs=len(vlogs), bytes=freed)


async def remove_stale_uploads(storage: VideoStorage, older_than: timedelta) -> int:
    """Vlogs stuck before `ready` (the process died mid-upload) and their bytes."""
    cutoff: datetime = utc_now() - older_than
    stale = (
        await collection()
        .find(
            {
                "state": {"$in": [VlogState.UPLOADING, VlogState.FAILED]},
                "uploaded_at": {"$lt": cutoff},
            },
            WITHOUT_THUMBNAIL,
        )
        .to_list()
    )
    await _remove(storage, stale)
    return len(stale)
