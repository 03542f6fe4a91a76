"""Beanie documents of the media service: vlogs, whose video bytes live in storage.

A vlog is either a stored video (`has_file`), or the seed's link-only kind that
records a `video_url` somewhere else. A stored video goes through the states
`uploading` -> `ready` (or is removed when it fails); its preview rendition, made only
when the original will not play in browsers, has a state of its own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

import pymongo
from beanie import Document, PydanticObjectId
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection


class VlogState(StrEnum):
    UPLOADING = "uploading"
    READY = "ready"
    FAILED = "failed"


class PreviewState(StrEnum):
    NOT_NEEDED = "not_needed"
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Vlog(Document):
    user_id: str
    # The study of the participant token that sent it; none: the study `default`.
    study_id: str | None = None
    title: str = ""
    description: str = ""
    # The credential that sent it (services.common.research.auth.credential_id): a device may
    # change only the vlogs its own credential wrote.
    written_by: str | None = None
    # When it was recorded (the seed's `timestamp`), and when it reached the server.
    timestamp: datetime
    uploaded_at: datetime
    state: VlogState
    has_file: bool
    # Link-only vlogs (the seed's `POST /api/vlogs`).
    video_url: str | None = None
    # The stored video.
    storage_id: PydanticObjectId | None = None
    original_name: str | None = None
    content_type: str | None = None
    container: str | None = None
    size: int | None = None
    sha256: str | None = None
    crc32: int | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str | None = None
    thumbnail: bytes | None = None
    preview_state: PreviewState = PreviewState.NOT_NEEDED
    preview_storage_id: PydanticObjectId | None = None
    preview_size: int | None = None
    preview_error: str | None = None
    # While a worker makes the preview: until when its claim holds, and the storage id
    # it writes under, so that bytes of an attempt cut short are always named by the
    # vlog and removed with it, or by the next attempt (services.media.previews).
    preview_claimed_until: datetime | None = None
    preview_writing_id: PydanticObjectId | None = None

    # Replaced by participant_sha256_study_unique (services.common.runtime.database).
    retired_indexes: ClassVar[tuple[str, ...]] = ("participant_sha256_unique",)

    class Settings:
        name = "vlogs"
        indexes = [
            IndexModel(
                [("user_id", pymongo.ASCENDING), ("timestamp", pymongo.ASCENDING), ("_id", 1)],
                name="participant_time",
            ),
            IndexModel([("timestamp", pymongo.ASCENDING), ("_id", 1)], name="time"),
            # The same participant uploading the same bytes gets the existing vlog;
            # the same id in another study is another person.
            IndexModel(
                [("user_id", pymongo.ASCENDING), ("sha256", 1), ("study_id", 1)],
                name="participant_sha256_study_unique",
                unique=True,
                partialFilterExpression={"sha256": {"$type": "string"}},
            ),
            IndexModel([("state", pymongo.ASCENDING), ("uploaded_at", 1)], name="state_age"),
            # Lists read ready vlogs one time band at a time (services.common.web.windows);
            # an index must name every field of such a query, or the embedded database
            # reads the whole collection for each band.
            IndexModel([("state", 1), ("timestamp", 1), ("_id", 1)], name="state_time"),
            IndexModel(
                [("state", 1), ("study_id", 1), ("timestamp", 1), ("_id", 1)],
                name="state_study_time",
            ),
            IndexModel(
                [("state", 1), ("user_id", 1), ("timestamp", 1), ("_id", 1)],
                name="state_participant_time",
            ),
        ]


class TusUpload(Document):
    """A resumable upload (tus 1.0) in progress: its bytes are in storage under
    `storage_id` up to `offset`, durably; the writer who created it continues it."""

    id: str  # type: ignore[assignment]  # the last part of its URL
    storage_id: PydanticObjectId
    length: int
    offset: int = 0
    metadata: dict[str, str] = {}
    writer_role: str
    writer_user_id: str | None = None
    writer_studies: list[str] | None = None
    # The credential that created it (services.common.research.auth.credential_id): what one
    # writer may have open is limited (services.media.tus).
    writer_id: str | None = None
    created_at: datetime
    expires_at: datetime
    # One PATCH at a time: its holder and until when.
    lease: str | None = None
    lease_until: datetime | None = None
    vlog_id: PydanticObjectId | None = None  # once complete

    class Settings:
        name = "tus_uploads"
        indexes = [
            IndexModel([("expires_at", pymongo.ASCENDING)], name="expiry"),
            IndexModel([("writer_id", 1), ("vlog_id", 1)], name="writer_open"),
        ]


DOCUMENTS: list[type[Document]] = [Vlog, TusUpload]


# The fields of a vlog that name bytes in storage it owns: deleting it deletes them.
OWNED_BYTES = ("storage_id", "preview_storage_id", "preview_writing_id")

# What listings read: everything but the thumbnail bytes.
WITHOUT_THUMBNAIL = {"thumbnail": 0}


def collection() -> AsyncCollection:
    """The vlogs, for the paths that use PyMongo directly."""
    return Vlog.get_pymongo_collection()
