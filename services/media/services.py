"""What the media service does with vlogs: take uploads (their bytes arrive through
`receiving`), describe them, list, edit and delete them, and tidy up; previews are
made by `previews`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from services.common.auth import study_of, written_as
from services.common.errors import (
    Conflict,
    NotFound,
    TooManyRequests,
    field_error,
)
from services.common.pagination import Order, fetch_page
from services.common.schemas import Principal, utc_now
from services.common.timestamps import recorded_at, stored_now
from services.common.validation import convert_record
from services.media import video
from services.media.models import WITHOUT_THUMBNAIL, PreviewState, Vlog, VlogState, collection
from services.media.receiving import VIDEO_FIELD, IncomingVideo, UploadForm
from services.media.schemas import DeletedVlogs, ParticipantVlogs, UploadFields, VlogOut
from services.media.settings import MediaSettings
from services.media.storage import VideoStorage

if TYPE_CHECKING:  # previews use this module's names; the worker is only passed in
    from services.media.previews import PreviewWorker

logger = logging.getLogger("emogo.media")

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


async def get_vlog(
    vlog_id: ObjectId, *, with_thumbnail: bool = False, scope: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A vlog by id, if it also matches `scope` (a participant's own only)."""
    projection = None if with_thumbnail else WITHOUT_THUMBNAIL
    vlog = await collection().find_one({"_id": vlog_id, **(scope or {})}, projection)
    if vlog is None:
        raise NotFound(f"No vlog with id {vlog_id}")
    return vlog


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
        writer: Principal,
    ) -> tuple[dict[str, Any], bool]:
        """(the vlog, whether it already existed) for an upload `receive` reads.

        With a participant token the video is the participant's own: another
        participant named before the file is refused before its bytes are read, one
        named after it once the form is complete, and nothing is kept either way."""
        if self._slots.locked():
            raise TooManyRequests(
                "Too many uploads in progress; retry shortly", headers={"Retry-After": "10"}
            )
        async with self._slots:
            incoming: IncomingVideo | None = None

            def make_video(name: str, fields: dict[str, str]) -> IncomingVideo:
                nonlocal incoming
                written_as(writer, fields)
                incoming = self._incoming(name, fields)
                return incoming

            try:
                form = await receive(make_video)
                if form.video is None:
                    raise field_error(VIDEO_FIELD, "is required: send the video file in `video`")
                details = check_details(written_as(writer, form.fields))
                return await self._store(form.video, details, study_of(writer))
            except BaseException:
                if incoming is not None:
                    # What a failed discard leaves, the periodic clean-up removes.
                    with contextlib.suppress(Exception):
                        await incoming.discard()
                raise

    async def _store(
        self, incoming: IncomingVideo, details: UploadFields, study_id: str | None
    ) -> tuple[dict[str, Any], bool]:
        now = stored_now()
        recorded = recorded_at(details.timestamp, now)
        sha256 = await incoming.finish()
        # The same participant id in another study is another person.
        same_bytes = {"user_id": details.user_id, "sha256": sha256, "study_id": study_id}
        existing = await collection().find_one(same_bytes, WITHOUT_THUMBNAIL)
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
        if study_id is not None:
            ready["study_id"] = study_id
        try:
            await collection().update_one({"_id": incoming.vlog_id}, {"$set": ready})
        except DuplicateKeyError:
            # The same bytes finished uploading a moment ago in another request.
            await incoming.discard()
            existing = await collection().find_one(same_bytes, WITHOUT_THUMBNAIL)
            if existing is None:  # and deleted since: the client may send it again
                raise Conflict(
                    "The same video was being stored and deleted at the same time; send it again"
                ) from None
            return existing, True
        stored = await get_vlog(incoming.vlog_id)
        if playable:
            incoming.remove_temp()
        else:
            self.previews.submit(incoming.vlog_id, incoming.temp_path)
        return stored, False


async def create_link(fields: dict[str, Any], study_id: str | None) -> dict[str, Any]:
    now = stored_now()
    vlog = Vlog(
        user_id=fields["user_id"],
        study_id=study_id,
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


async def edit(vlog_id: ObjectId, changes: dict[str, str], scope: dict[str, Any]) -> dict[str, Any]:
    await get_vlog(vlog_id, scope=scope)
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
