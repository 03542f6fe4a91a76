"""Wire types of the ingest service: what phones send and what readers get back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from services.common.research.values import (
    Accuracy,
    Emotion,
    Heading,
    Intensity,
    Label,
    Latitude,
    Longitude,
    Metres,
    Note,
    PlaceName,
    Speed,
)
from services.common.web.schemas import ClientId, ParticipantId, WireStruct

R = TypeVar("R")
Instant = Annotated[
    str | float,
    Meta(
        description="When it was recorded: ISO 8601 (an offset or `Z` is converted to UTC; "
        "without one it is taken as UTC) or epoch seconds (milliseconds from 1e11 on). "
        "Missing means now.",
        examples=["2025-11-23T03:08:40.000Z"],
    ),
]


class SentimentIn(WireStruct):
    user_id: ParticipantId
    emotion: Emotion
    intensity: Intensity
    timestamp: Instant | None = None
    note: Note | None = None
    context: Label | None = None
    client_id: ClientId | None = None


class GpsFixIn(WireStruct):
    user_id: ParticipantId
    latitude: Latitude
    longitude: Longitude
    timestamp: Instant | None = None
    altitude: Metres | None = None
    accuracy: Accuracy | None = None
    speed: Speed | None = None
    heading: Heading | None = None
    location_name: PlaceName | None = None
    client_id: ClientId | None = None


class SentimentOut(WireStruct):
    id: str = msgspec.field(name="_id")
    study_id: str
    user_id: str
    emotion: str
    intensity: float
    timestamp: datetime
    received_at: datetime
    client_id: str | None = None
    note: str | None = None
    context: str | None = None


class GpsFixOut(WireStruct):
    id: str = msgspec.field(name="_id")
    study_id: str
    user_id: str
    latitude: float
    longitude: float
    timestamp: datetime
    received_at: datetime
    client_id: str | None = None
    altitude: float | None = None
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None
    location_name: str | None = None


class Created(WireStruct, Generic[R]):
    """The seed's reply to a single write (`message`, `id`), with the stored record."""

    message: str
    id: str
    record: R


class FieldProblem(WireStruct):
    field: str
    reason: str


class RecordOutcome(WireStruct, omit_defaults=True):
    """What became of one record of a batch, by its position in the batch."""

    index: int
    status: Literal["stored", "duplicate", "rejected"]
    id: str | None = None
    errors: list[FieldProblem] | None = None


class BatchResult(WireStruct):
    received: int
    stored: int
    duplicates: int
    rejected: int
    results: list[RecordOutcome]


class Count(WireStruct):
    count: int


class EmotionStats(WireStruct):
    count: int
    mean_intensity: float


class ParticipantTelemetry(WireStruct):
    user_id: str
    sentiments: int
    gps_fixes: int
    first_activity: datetime | None
    last_activity: datetime | None
    emotions: dict[str, EmotionStats]


class ParticipantPage(WireStruct):
    participants: list[ParticipantTelemetry]
    next_cursor: str | None


class TimelinePoint(WireStruct):
    day: str  # YYYY-MM-DD, a local day of the study's time zone
    emotion: str
    count: int
    mean_intensity: float


class TelemetryTotals(WireStruct):
    sentiments: int
    gps_fixes: int
    participants: int
    first_activity: datetime | None
    last_activity: datetime | None
    emotions: dict[str, EmotionStats]


class DeletedTelemetry(WireStruct):
    user_id: str | None  # None: a whole study's
    sentiments: int
    gps_fixes: int


class DayActivity(WireStruct, omit_defaults=True):
    """What arrived from one participant on one local day (omitted: none)."""

    sentiments: int = 0
    gps_fixes: int = 0
    # Hours of the local day with at least one fix (up to 23 or 25 at DST changes).
    gps_hours: int = 0


class ParticipantActivity(WireStruct):
    user_id: str
    study_id: str
    days: dict[str, DayActivity]  # by local day, "YYYY-MM-DD"
    last_sentiment: datetime | None
    last_gps_fix: datetime | None
