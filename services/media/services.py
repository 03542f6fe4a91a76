"""What the media service does with vlogs once stored: describe, list, edit and delete
them, and tidy up. Uploads arrive through `uploads` (bytes by `receiving`), previews
are made by `previews`."""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ReturnDocument

from services.common.research.privacy import Disguise
from services.common.research.studies import DEFAULT_STUDY, record_study
from services.common.web.errors import (
    NotFound,
    field_error,
)
from services.common.web.pagination import Order, TimeCursor, with_next_cursor
from services.common.web.schemas import utc_now
from services.common.web.timestamps import recorded_at, stored_now
from services.common.web.windows import BandedReader
from services.media import video
from services.media.models import (
    OWNED_BYTES,
    WITHOUT_THUMBNAIL,
    PreviewState,
    TusUpload,
    Vlog,
    VlogState,
    collection,
)
from services.media.schemas import (
    DeletedVlogs,
    VlogOut,
)
from services.media.storage import VideoStorage

if TYPE_CHECKING:  # previews use this module's names; the worker is only passed in
    pass

logger = logging.getLogger("emogo.media")
# Later than any recording time a vlog may carry: the end of a list's time bands.
LATEST = datetime(9999, 1, 1)

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
        # Vlogs of the study `default` carry none (they came with a global token).
        study_id=vlog.get("study_id") or DEFAULT_STUDY,
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


async def create_link(
    fields: dict[str, Any], study_id: str | None, written_by: str
) -> dict[str, Any]:
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
        written_by=written_by,
    )
    await vlog.insert()
    assert vlog.id is not None  # set by the insert
    return await get_vlog(vlog.id)


def clear_temp_dir(temp_dir: Path) -> None:
    if temp_dir.is_dir():
        for leftover in temp_dir.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)


# --- listing, editing, deleting -----------------------------------------------------


async def list_page(
    query: dict[str, Any],
    order: Order,
    limit: int,
    cursor: str | None,
    disguise: Disguise | None = None,
) -> tuple[list[VlogOut], str | None]:
    """A page of vlogs read in time bands (services.common.web.windows): its cost follows
    the page, not every vlog ever recorded."""
    position = TimeCursor.decode(cursor, order) if cursor is not None else None
    now = stored_now()
    reader = BandedReader(
        collection(), query, LATEST, None, WITHOUT_THUMBNAIL, now=now + timedelta(minutes=1)
    )
    vlogs, next_cursor = with_next_cursor(
        await reader.page(order, limit + 1, position), order, limit
    )
    if disguise is not None:
        vlogs = await disguise.shown(vlogs)
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


async def edit(vlog_id: ObjectId, changes: dict[str, str], scope: dict[str, Any]) -> dict[str, Any]:
    """Changes a vlog that matches `scope` (services.common.research.auth.edit_scope); the scope
    is part of the update's own filter, so no other vlog can be changed."""
    if not changes:
        return await get_vlog(vlog_id, scope=scope)
    changed = await collection().find_one_and_update(
        {"_id": vlog_id, **scope},
        {"$set": changes},
        projection=WITHOUT_THUMBNAIL,
        return_document=ReturnDocument.AFTER,
    )
    if changed is None:
        raise NotFound(f"No vlog with id {vlog_id}")
    return changed


async def delete_vlogs(storage: VideoStorage, vlogs: list[dict[str, Any]]) -> int:
    """Deletes vlogs and every byte they own; returns the bytes freed."""
    freed = 0
    for vlog in vlogs:
        # Bytes first: a deletion cut short leaves the document, which names them, so
        # doing it again removes what is left (the other way round would orphan them).
        for key in OWNED_BYTES:
            if vlog.get(key) is not None:
                await storage.delete(vlog[key])
        deleted = await collection().find_one_and_delete(
            {"_id": vlog["_id"]}, {"preview_storage_id": 1, "preview_size": 1}
        )
        latest = deleted or vlog
        # A preview named between the read above and the deletion: its bytes go too.
        if latest.get("preview_storage_id") not in (None, vlog.get("preview_storage_id")):
            await storage.delete(latest["preview_storage_id"])
        freed += (vlog.get("size") or 0) + (latest.get("preview_size") or 0)
    return freed


async def delete_one(storage: VideoStorage, vlog_id: ObjectId) -> DeletedVlogs:
    vlog = await get_vlog(vlog_id)
    freed = await delete_vlogs(storage, [vlog])
    return DeletedVlogs(user_id=vlog["user_id"], vlogs=1, bytes=freed)


async def delete_participant(
    storage: VideoStorage, user_id: str, study_id: str | None = None
) -> DeletedVlogs:
    """Deletes a participant's vlogs and unfinished uploads, of every study or of
    `study_id` only."""
    theirs: dict[str, Any] = {"user_id": user_id}
    unfinished: dict[str, Any] = {
        "$or": [{"writer_user_id": user_id}, {"metadata.user_id": user_id}]
    }
    if study_id is not None:
        theirs["study_id"] = record_study(study_id)
        unfinished = {"$and": [unfinished, _uploads_of_study(study_id)]}
    freed, count = await _remove_all(storage, theirs, unfinished)
    return DeletedVlogs(user_id=user_id, vlogs=count, bytes=freed)


async def delete_study(storage: VideoStorage, study_id: str) -> DeletedVlogs:
    """Deletes every vlog and unfinished upload of a study."""
    freed, count = await _remove_all(storage, {"study_id": study_id}, _uploads_of_study(study_id))
    return DeletedVlogs(user_id=None, vlogs=count, bytes=freed)


def _uploads_of_study(study_id: str) -> dict[str, Any]:
    return {"$or": [{"writer_studies": study_id}, {"metadata.study_id": study_id}]}


async def _remove_all(
    storage: VideoStorage, vlogs_query: dict[str, Any], uploads_query: dict[str, Any]
) -> tuple[int, int]:
    """Removes the vlogs and the unfinished resumable uploads matching the queries,
    with every byte they own; returns the bytes freed and the vlogs removed."""
    vlogs = await collection().find(vlogs_query, WITHOUT_THUMBNAIL).to_list()
    freed = await delete_vlogs(storage, vlogs)
    uploads = TusUpload.get_pymongo_collection()
    unfinished = {**uploads_query, "vlog_id": None}
    async for upload in uploads.find(unfinished, {"storage_id": 1, "offset": 1}):
        await storage.delete(upload["storage_id"])
        await uploads.delete_one({"_id": upload["_id"]})
        freed += upload.get("offset") or 0
    return freed, len(vlogs)


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
    await delete_vlogs(storage, stale)
    return len(stale)
