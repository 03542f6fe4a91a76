"""What arrived from each participant on each local day of their study: the compliance
heatmap's cells and the last record of each kind, from each participant's calendar (one
rollup row per participant and kind, with its local days), or from the records while
the rollups are being recounted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.research.localdays import hour_count, local_day_and_hour
from services.common.research.studies import DEFAULT_STUDY, StudyZones
from services.ingest.kinds import GPS_FIXES, KINDS, SENTIMENTS
from services.ingest.rollups import (
    CALENDAR,
    DAILY,
    Key,
    add_at,
    rollup_rows,
    row_key,
)
from services.ingest.schemas import DayActivity, ParticipantActivity

FIELD_OF = {SENTIMENTS.key: "sentiments", GPS_FIXES.key: "gps_fixes"}
LAST_OF = {SENTIMENTS.key: "last_sentiment", GPS_FIXES.key: "last_gps_fix"}


async def participant_activity(
    window: dict[str, Any], fallback_zone: str
) -> list[ParticipantActivity]:
    """Per participant (of each study) and local day: sentiments, GPS fixes and hours
    with a fix; sorted by study and participant."""
    level = DAILY if "timestamp" in window else CALENDAR
    rows = await rollup_rows(window, level)
    if rows is None:
        rows = await _hourly_sums(window, await StudyZones.load(fallback_zone))
    sums: dict[Key, dict[str, Any]] = {}
    for row in rows:
        add_at(CALENDAR, sums, row_key(row), row)
    people: dict[tuple[str, str], ParticipantActivity] = {}
    for key, row in sorted(sums.items()):
        person = people.setdefault(
            (key.study, key.user_id),
            ParticipantActivity(
                user_id=key.user_id,
                study_id=key.study or DEFAULT_STUDY,
                days={},
                last_sentiment=None,
                last_gps_fix=None,
            ),
        )
        field = FIELD_OF[key.kind]
        for local_day, records in row.get("days", {}).items():
            day = person.days.setdefault(local_day, DayActivity())
            setattr(day, field, getattr(day, field) + records)
            if key.kind == GPS_FIXES.key:
                day.gps_hours |= row["day_hours"][local_day]  # a bit mask until the end
        last = LAST_OF[key.kind]
        if getattr(person, last) is None or row["last"] > getattr(person, last):
            setattr(person, last, row["last"])
    for person in people.values():
        person.days = dict(sorted(person.days.items()))
        for day in person.days.values():
            day.gps_hours = hour_count(day.gps_hours)
    return list(people.values())


async def _hourly_sums(window: dict[str, Any], zones: StudyZones) -> list[dict[str, Any]]:
    """The records summed per participant and UTC hour by the database, placed in local
    days here (in a zone whose offset is not whole hours, an hour's records go to the
    local hour it starts in)."""
    rows: list[dict[str, Any]] = []
    for kind in KINDS:
        pipeline = [
            {"$match": window},
            {
                "$group": {
                    "_id": {
                        "study": "$study_id",
                        "user_id": "$user_id",
                        "hour": {"$dateToString": {"format": "%Y-%m-%dT%H", "date": "$timestamp"}},
                    },
                    "records": {"$sum": 1},
                    "first": {"$min": "$timestamp"},
                    "last": {"$max": "$timestamp"},
                }
            },
        ]
        async for group in await kind.collection.aggregate(pipeline):
            hour = datetime.strptime(group["_id"]["hour"], "%Y-%m-%dT%H")
            study = group["_id"].get("study")
            local_day, local_hour = local_day_and_hour(hour, zones.zone(study))
            rows.append(
                {
                    "kind": kind.key,
                    "study": study or "",
                    "user_id": group["_id"]["user_id"],
                    "local_day": local_day,
                    "records": group["records"],
                    "intensity_sum": 0.0,
                    "first": group["first"],
                    "last": group["last"],
                    "hours": 1 << local_hour,
                }
            )
    return rows
