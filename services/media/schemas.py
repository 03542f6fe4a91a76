"""Wire types of the media service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from services.common.web.schemas import END_OF_TEXT, ParticipantId, WireStruct, worded

Title = Annotated[str, Meta(max_length=200)]
Description = Annotated[str, Meta(max_length=5000)]
HttpUrl = Annotated[
    str,
    Meta(
        max_length=2048,
        pattern=worded(r"^https?://[^\s]+" + END_OF_TEXT, "an http(s) URL without spaces"),
        description="An http(s) URL.",
    ),
]


class VlogLinkIn(WireStruct):
    """The seed's link-only vlog: the video lives elsewhere."""

    user_id: ParticipantId
    video_url: HttpUrl
    title: Title = ""
    description: Description = ""
    duration: Annotated[float, Meta(ge=0, le=86400)] | None = None
    timestamp: str | float | None = None


class UploadFields(WireStruct):
    """The text fields of the seed's upload form (or the raw upload's query)."""

    user_id: ParticipantId
    title: Title = ""
    description: Description = ""
    timestamp: Annotated[str, Meta(max_length=64)] | None = None


class VlogEdit(WireStruct):
    title: Title | None = None
    description: Description | None = None


class VlogOut(WireStruct):
    """A vlog as every reader sees it; URLs are paths on the gateway."""

    id: str = msgspec.field(name="_id")
    study_id: str
    user_id: str
    title: str
    description: str
    timestamp: datetime
    uploaded_at: datetime
    state: str
    has_file: bool
    video_url: str | None
    download_url: str | None
    play_url: str | None
    thumbnail_url: str | None
    file_size: int | None
    original_name: str | None
    content_type: str | None
    container: str | None
    sha256: str | None
    crc32: int | None
    duration: float | None
    width: int | None
    height: int | None
    fps: float | None
    codec: str | None
    browser_playable: bool
    preview_state: str


class VlogCreated(WireStruct):
    """The seed's reply to an upload (`message`, `id`, `video_url`, `download_url`,
    `file_size`), with the whole vlog."""

    message: str
    id: str
    video_url: str | None
    download_url: str | None
    file_size: int | None
    duplicate: bool
    vlog: VlogOut


class VlogCount(WireStruct):
    count: int
    total_bytes: int


class ParticipantVlogs(WireStruct):
    user_id: str
    vlogs: int
    total_bytes: int
    total_duration: float
    first_recorded: datetime
    last_recorded: datetime


class VlogDay(WireStruct):
    vlogs: int
    seconds: float


class ParticipantVlogDays(WireStruct):
    """A participant's vlogs (of one study): totals, and per local day of the study
    (recorded time)."""

    user_id: str
    study_id: str
    vlogs: int
    total_bytes: int
    total_duration: float
    first_recorded: datetime
    last_recorded: datetime
    days: dict[str, VlogDay]  # by local day, "YYYY-MM-DD"


class DeletedVlogs(WireStruct):
    user_id: str | None
    vlogs: int
    bytes: int


class CleanupReport(WireStruct):
    removed_uploads: int
