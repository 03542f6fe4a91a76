"""Studies: one course, lab project or cohort each, whose data is kept apart.

Admin-service data (the admin API creates and closes them), defined here because
every service reads them: a closed study takes no new data. The study `default`
always exists; data sent with the environment's global tokens belongs to it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import pymongo
from beanie import Document
from pymongo import IndexModel

from services.common.research.localdays import zone_named
from services.common.web.errors import Forbidden, NotFound
from services.common.web.schemas import END_OF_TEXT, worded
from services.common.web.timestamps import stored_now

DEFAULT_STUDY = "default"
# Whole local days without a record after which a participant has stopped reporting.
DEFAULT_SILENT_DAYS = 2
# A slug: it appears in URLs, file names of exports and log lines.
STUDY_RULE = "2-63 characters: lower-case letters, digits and - (starting with a letter or digit)"
STUDY_PATTERN = worded(r"^[a-z0-9][a-z0-9-]{1,62}" + END_OF_TEXT, STUDY_RULE)
StudyId = Annotated[
    str,
    msgspec.Meta(
        pattern=STUDY_PATTERN,
        description=f"The study's id: {STUDY_RULE}.",
        examples=["psych101-fall"],
    ),
]


class StudyStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


def is_time_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows (tzdata)."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Study(Document):
    study_id: str
    name: str
    # None: the deployment's EMOGO_DISPLAY_TIMEZONE (StudyZones).
    time_zone: str | None = None
    # What each participant is expected to send ({"sentiments_per_day": 3, ...}), when
    # they count as stopped, and where the daily notice of that goes.
    expectations: dict[str, float | None] = {}
    silent_after_days: int = DEFAULT_SILENT_DAYS
    webhook_url: str | None = None
    status: StudyStatus = StudyStatus.ACTIVE
    # What viewers are not shown (services.common.research.privacy): real participant ids
    # (pseudonyms, made with the study's own key) and fixes finer than a grid.
    pseudonyms: bool = False
    pseudonym_key: str | None = None
    gps_grid_m: int | None = None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None

    class Settings:
        name = "studies"
        indexes = [
            IndexModel([("study_id", pymongo.ASCENDING)], name="study_id_unique", unique=True)
        ]


async def ensure_default_study() -> None:
    """Creates the study `default` (days in EMOGO_DISPLAY_TIMEZONE until an admin gives
    it a time zone) unless it exists; leaves an existing one as it is."""
    now = stored_now()
    await Study.get_pymongo_collection().update_one(
        {"study_id": DEFAULT_STUDY},
        {
            "$setOnInsert": {
                "study_id": DEFAULT_STUDY,
                "name": "Default study",
                "time_zone": None,
                "status": StudyStatus.ACTIVE.value,
                "created_at": now,
                "updated_at": now,
                "closed_at": None,
            }
        },
        upsert=True,
    )


def row_study(study_id: str | None) -> str:
    """How rollups name a study: "" for `default`, whose records carry none."""
    return "" if study_id in (None, DEFAULT_STUDY) else study_id


def record_study(study_id: str | None) -> str | None:
    """How records name a study in their `study_id`: not at all for `default` (a query
    for None matches a record without the field)."""
    return None if study_id == DEFAULT_STUDY else study_id


class StudyZones:
    """The time zone each study counts its days in: its own, or `fallback`
    (EMOGO_DISPLAY_TIMEZONE) for a study without one. Keys are as records name studies
    ("" for `default`)."""

    def __init__(self, zones: dict[str, str], fallback: str) -> None:
        self.names = zones
        self.fallback = fallback

    @classmethod
    async def load(cls, fallback: str) -> StudyZones:
        found = Study.get_pymongo_collection().find({}, {"_id": 0, "study_id": 1, "time_zone": 1})
        zones = {row_study(s["study_id"]): s.get("time_zone") or fallback async for s in found}
        return cls(zones, fallback)

    def name(self, study: str | None) -> str:
        return self.names.get(row_study(study), self.fallback)

    def zone(self, study: str | None) -> ZoneInfo:
        return zone_named(self.name(study))

    def study_filters(self) -> dict[str, dict[str, Any]]:
        """Per zone in use, the filter on records' `study_id` that selects the studies
        counted in it (the fallback zone's also takes any study not known here), for a
        database that groups by local day one zone at a time."""
        members: dict[str, list[str | None]] = {self.fallback: []}
        for study, name in self.names.items():
            members.setdefault(name, []).append(study or None)
        filters: dict[str, dict[str, Any]] = {}
        for name, ids in members.items():
            if name == self.fallback:
                others = [s for other, its in members.items() if other != name for s in its]
                filters[name] = {"study_id": {"$nin": others}}
            else:
                filters[name] = {"study_id": {"$in": ids}}
        return filters


async def open_study(study_id: str) -> dict[str, Any]:
    """The study, if it exists (else 404) and is open (else 403: it takes nothing new,
    neither data nor participants)."""
    study: dict[str, Any] | None = await Study.get_pymongo_collection().find_one(
        {"study_id": study_id}
    )
    if study is None:
        raise NotFound(f"No study {study_id!r}")
    if study["status"] == StudyStatus.CLOSED:
        raise Forbidden(f"The study {study_id!r} is closed: it enrols nobody")
    return study
