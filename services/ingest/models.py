"""Beanie documents of the ingest service: sentiments and GPS fixes.

Beanie owns the schema and the indexes (created by `init_beanie` at start-up). The
write and bulk-read paths use the same collections through PyMongo directly, after
validating with msgspec: Beanie's per-record pydantic round trip measured at about
0.55x raw `insert_many` on 500-record batches, too slow for phones syncing in bulk.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import pymongo
from beanie import Document
from pydantic import BaseModel
from pymongo import IndexModel

# Makes a client id idempotent per participant; records without one are not deduplicated.
# A client id is unique per participant of a study: another study's participant may
# have the same id (generated ids start at P001 in each). Records of `default` carry
# no study, which the index holds as null.
CLIENT_ID_INDEX = "participant_client_id_study_unique"
RETIRED = ("participant_client_id_unique",)  # the same without the study


def telemetry_indexes() -> list[IndexModel]:
    """Indexes that serve every query of the API: by participant and time, by time alone,
    by study and time (each ending in `_id`, the tie-break of the cursor), and the
    idempotency key."""
    return [
        IndexModel(
            [("user_id", pymongo.ASCENDING), ("timestamp", pymongo.ASCENDING), ("_id", 1)],
            name="participant_time",
        ),
        IndexModel([("timestamp", pymongo.ASCENDING), ("_id", 1)], name="time"),
        # A study viewer's lists (bench/semester.py --studies 10): without it the
        # embedded database reads every record of the time band to find the study's.
        IndexModel([("study_id", 1), ("timestamp", 1), ("_id", 1)], name="study_time"),
        # What the rollups fold: the records received since their last fold.
        IndexModel([("received_at", pymongo.ASCENDING)], name="received"),
        IndexModel(
            [("user_id", pymongo.ASCENDING), ("client_id", 1), ("study_id", 1)],
            name=CLIENT_ID_INDEX,
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        ),
    ]


class Sentiment(Document):
    user_id: str
    emotion: str
    intensity: float
    timestamp: datetime
    received_at: datetime
    client_id: str | None = None
    note: str | None = None
    context: str | None = None

    retired_indexes: ClassVar[tuple[str, ...]] = RETIRED

    class Settings:
        name = "sentiments"
        indexes = telemetry_indexes()


class GpsFix(Document):
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

    retired_indexes: ClassVar[tuple[str, ...]] = RETIRED

    class Settings:
        name = "gps_coordinates"
        indexes = telemetry_indexes()


DOCUMENTS: list[type[Document]] = [Sentiment, GpsFix]


class RollupCounts(BaseModel):
    """What a rollup row counts: the records received before `folded_to` (services.
    ingest.rollups), their intensity sum and their first and last time."""

    kind: str
    study: str = ""  # "" for the study `default`, whose records carry no study
    user_id: str
    day: str  # YYYY-MM-DD, UTC
    local_day: str = ""  # YYYY-MM-DD in the study's time zone
    emotion: str  # "" for GPS fixes
    records: int
    intensity_sum: float
    first: datetime
    last: datetime
    # Bit h: some record fell in hour h of the local day (counted from its midnight).
    hours: int = 0
    # Calendars and timelines only (services.ingest.rollups): per local day, the records,
    # and their hours (bits, a calendar) or intensity sum (a timeline).
    days: dict[str, int] = {}
    day_hours: dict[str, int] = {}
    day_intensity: dict[str, float] = {}
    folded_to: datetime


# The rows' keys before they had a study (rollups version 1) and a local day (2).
RETIRED_ROLLUP_INDEXES = (
    "rollup_key",
    "rollup_key_folded_to",
    "total_key",
    "total_key_folded_to",
    "rollup_study_key",
    "rollup_study_key_folded_to",
    "total_study_key",
    "total_study_key_folded_to",
)
ROLLUP_KEY = [
    ("kind", 1),
    ("user_id", 1),
    ("day", 1),
    ("local_day", 1),
    ("study", 1),
    ("emotion", 1),
]


class DailyRollup(RollupCounts, Document):
    """Per kind, study, participant, UTC and local day (and emotion), so totals,
    timelines and participant tables read a few rows per participant and day instead of
    every record."""

    retired_indexes: ClassVar[tuple[str, ...]] = RETIRED_ROLLUP_INDEXES

    class Settings:
        name = "telemetry_daily"
        indexes = [
            IndexModel(ROLLUP_KEY, name="rollup_local_key", unique=True),
            # A fold's write names the key and a bound on `folded_to` (services.ingest.
            # rollups); with the key alone indexed the embedded database scans every row.
            IndexModel([*ROLLUP_KEY, ("folded_to", 1)], name="rollup_local_key_folded_to"),
            IndexModel([("kind", 1), ("day", 1)], name="kind_day"),
        ]


class RollupTotal(RollupCounts, Document):
    """Sums of daily rows in each study: per participant over all days (`level`
    "participant", `day` ""), and per day over all participants (`level` "day",
    `user_id` ""), so the export page's totals, participant table and timeline read a
    few hundred rows."""

    level: str
    retired_indexes: ClassVar[tuple[str, ...]] = RETIRED_ROLLUP_INDEXES

    class Settings:
        name = "telemetry_totals"
        indexes = [
            IndexModel([("level", 1), *ROLLUP_KEY], name="total_local_key", unique=True),
            IndexModel(
                [("level", 1), *ROLLUP_KEY, ("folded_to", 1)], name="total_local_key_folded_to"
            ),
            IndexModel([("level", 1), ("user_id", 1)], name="level_participant"),
            IndexModel([("level", 1), ("day", 1)], name="level_day"),
        ]


class DaysSeen(Document):
    """The days a kind of record was stored on, for one participant (`<kind>|<user>`)
    or anyone (`<kind>|*`): `days` maps "YYYY-MM-DD" to true (services.ingest.days)."""

    id: str  # type: ignore[assignment]  # our own key type in place of Beanie's ObjectId
    days: dict[str, bool] = {}

    class Settings:
        name = "telemetry_days_seen"


class RollupState(Document):
    """One document: up to when every rollup row is complete, and which worker holds
    the lease to fold what came since."""

    folded_before: datetime | None = None
    # Records per kind and UTC day ("sentiments" -> "2025-03-01" -> n).
    days: dict[str, dict[str, int]] = {}
    # The time zone each study's rows were counted in ("" for `default`), and the one
    # of studies without their own (EMOGO_DISPLAY_TIMEZONE).
    zones: dict[str, str] = {}
    fallback_zone: str | None = None
    holder: str | None = None
    lease_until: datetime | None = None

    class Settings:
        name = "telemetry_daily_state"


DOCUMENTS += [DailyRollup, RollupTotal, RollupState, DaysSeen]
