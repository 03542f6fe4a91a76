"""Daily rollups: per kind, study, participant, UTC day, local day and emotion, the
number of records, their intensity sum, first and last time and the hours of the local
day they fell in, so that totals, timelines, participant tables and the compliance
heatmap read a few rows instead of every record. This module holds the rows' shape and
how readers use them; `folding` keeps them current.

A row has both days: list pages plan their time bands by UTC day (services.common.
windows), and people count in the local days of the study's time zone (services.common.
localdays). A UTC day meets at most two local days, so this at most doubles the rows.
The zones the rows were counted in are kept in the state document; when a study moves
to another zone, everything is recounted (folding).

The records are the only truth, and every count is kept in MongoDB, so any number
of workers and replicas agree without sharing memory:

- A row counts the records of its group received before its `folded_to`.
- `folded_before` (one state document) is the point up to which every row is
  complete. Records received since then (the *tail*, a few seconds of writes) are
  added by each reader from the records themselves, so a write is in every total
  as soon as it is acknowledged, whichever worker stored it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from pymongo import ReplaceOne

from services.common.research.localdays import local_day_and_hour
from services.common.research.studies import StudyZones, row_study
from services.ingest.kinds import KINDS, SENTIMENTS, TelemetryKind
from services.ingest.models import DailyRollup, RollupState, RollupTotal

logger = logging.getLogger("emogo.ingest")

STATE_ID = "rollups"
WRITE_BATCH = 1000
# What a rollup needs of a record.
FIELDS = {
    "_id": 0,
    "user_id": 1,
    "study_id": 1,
    "timestamp": 1,
    "emotion": 1,
    "intensity": 1,
    "received_at": 1,
}
# What the rows hold. Version 2 added the study, 3 the local day and its hours, 4 the
# calendars and timelines; rows of another version are recounted at start
# (ensure_rollups).
VERSION = 4


class Key(NamedTuple):
    kind: str
    study: str  # "" for the study `default`, whose records carry none
    user_id: str
    day: str  # UTC
    local_day: str  # in the study's time zone
    emotion: str


KEY_FIELDS = Key._fields
# Rows per study, participant and day (telemetry_daily); and sums of those
# (telemetry_totals): per study and participant over all days (per emotion), per study
# and day over all participants; each participant's *calendar* (one row per kind, with
# the records and hours of each local day: what the compliance heatmap reads) and each
# study's *timeline* (one row per kind and emotion, with the records and intensity sum
# of each local day: the chart of intensity over time). The per-day maps are kept on
# rows of their own so that totals and participant tables read small rows.
DAILY, PARTICIPANT, DAY = "daily", "participant", "day"
CALENDAR, TIMELINE = "calendar", "timeline"
# What a calendar and a timeline keep per local day besides the records: the field of
# a row they sum, and the map it goes to (`days` has the records).
DAY_MAPS = {CALENDAR: ("hours", "day_hours"), TIMELINE: ("intensity_sum", "day_intensity")}


def _day(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d")


def _key(kind: TelemetryKind, record: dict[str, Any], local_day: str) -> Key:
    emotion = record.get("emotion", "") if kind is SENTIMENTS else ""
    study = row_study(record.get("study_id"))
    return Key(kind.key, study, record["user_id"], _day(record["timestamp"]), local_day, emotion)


def row_key(row: dict[str, Any]) -> Key:
    """A row's key; a field it lacks (a sum computed from the records) is ""."""
    return Key(*(row.get(field, "") for field in KEY_FIELDS))


def at_level(level: str, key: Key) -> Key:
    """A daily row's key at `level`: the participant's totals (all days) or the day's
    totals (all participants) in its study; the fields a level sums over are ""."""
    if level == PARTICIPANT:
        return key._replace(day="", local_day="")
    if level == CALENDAR:
        return key._replace(day="", local_day="", emotion="")
    if level == TIMELINE:
        return key._replace(user_id="", day="", local_day="")
    if level == DAY:
        return key._replace(user_id="")
    return key


def add_at(level: str, rows: dict[Key, dict[str, Any]], key: Key, part: dict[str, Any]) -> None:
    """Adds a record or a row to the row of `key` at `level`."""
    add_to(rows, at_level(level, key), part, DAY_MAPS.get(level))


def add_to(
    rows: dict[Key, dict[str, Any]],
    key: Key,
    part: dict[str, Any],
    day_map: tuple[str, str] | None = None,
) -> None:
    """Adds a record or a row (`records`, `intensity_sum`, `first`, `last`, `hours`) to
    `key`; a calendar or timeline row (`day_map`: DAY_MAPS) also keeps the part's local
    day, or days, in its maps."""
    row = rows.get(key)
    if row is None:
        row = rows[key] = {
            **key._asdict(),
            "records": 0,
            "intensity_sum": 0.0,
            "first": part["first"],
            "last": part["last"],
            "hours": 0,
        }
    row["records"] += part["records"]
    row["intensity_sum"] += part["intensity_sum"]
    row["first"] = min(row["first"], part["first"])
    row["last"] = max(row["last"], part["last"])
    if key.local_day:
        row["hours"] |= part.get("hours", 0)
    if day_map is None:
        return
    field, name = day_map
    days, values = row.setdefault("days", {}), row.setdefault(name, {})
    if part.get("local_day"):
        added = {part["local_day"]: part["records"]}
        added_values = {part["local_day"]: part.get(field, 0)}
    else:  # a calendar or timeline added to another
        added, added_values = part.get("days", {}), part.get(name, {})
    for local_day, records in added.items():
        days[local_day] = days.get(local_day, 0) + records
        value = added_values.get(local_day, 0)
        # Hours are a bit mask (or), intensities a sum.
        values[local_day] = (
            values.get(local_day, 0) | value
            if field == "hours"
            else (values.get(local_day, 0.0) + value)
        )


def count_into(
    rows: dict[Key, dict[str, Any]],
    kind: TelemetryKind,
    record: dict[str, Any],
    zones: StudyZones,
    level: str = DAILY,
) -> None:
    at = record["timestamp"]
    local_day, hour = local_day_and_hour(at, zones.zone(record.get("study_id")))
    intensity = record.get("intensity", 0.0) if kind is SENTIMENTS else 0.0
    part = {
        "records": 1,
        "intensity_sum": intensity,
        "first": at,
        "last": at,
        "local_day": local_day,
        "hours": 1 << hour,
    }
    add_at(level, rows, _key(kind, record, local_day), part)


def received_before(instant: datetime) -> dict[str, Any]:
    # Records stored before `received_at` existed have none; they count as old.
    return {"received_at": {"$not": {"$gte": instant}}}


def upserts(
    rows: Iterable[dict[str, Any]],
    folded_to: datetime,
    level: str = DAILY,
    newer_only: bool = False,
) -> list[ReplaceOne]:
    """Writes that make each row exactly `row`: replaced whole, so that no field of an
    older version of the rows outlives a recount."""
    fields = KEY_FIELDS + (("level",) if level != DAILY else ())
    # A row already folded past `folded_to` then refuses the write by its unique key.
    newer = {"folded_to": {"$lt": folded_to}} if newer_only else {}
    writes = []
    for row in rows:
        row = {**row, "level": level} if level != DAILY else row
        writes.append(
            ReplaceOne(
                {**{k: row[k] for k in fields}, **newer},
                {**row, "folded_to": folded_to},
                upsert=True,
            )
        )
    return writes


def collection_of(level: str) -> Any:
    return (DailyRollup if level == DAILY else RollupTotal).get_pymongo_collection()


async def read_state() -> dict[str, Any] | None:
    """The state document: the fold's mark, the day totals, the zones, the lease."""
    return await RollupState.get_pymongo_collection().find_one({"_id": STATE_ID})


async def zones_counted_in(state: dict[str, Any]) -> StudyZones:
    """The zones the rows were counted in; a study created since the last fold (no
    rows yet) in its own."""
    zones = await StudyZones.load(state.get("fallback_zone") or "UTC")
    zones.names.update(
        {row_study(study): name for study, name in (state.get("zones") or {}).items()}
    )
    return zones


async def folded_before() -> datetime | None:
    state = await read_state()
    return state.get("folded_before") if state else None


# --- reading -------------------------------------------------------------------------


def _day_bounds(window: dict[str, Any]) -> dict[str, str] | None:
    """The rollup filter on `day` for a window whose bounds fall on UTC midnights;
    None when a bound is mid-day (then only the records can answer)."""
    bounds = window.get("timestamp", {})
    days: dict[str, str] = {}
    for operator, instant in bounds.items():
        if (instant.hour, instant.minute, instant.second, instant.microsecond) != (0, 0, 0, 0):
            return None
        days[operator] = _day(instant)
    return days


def level_for(window: dict[str, Any], per_day: bool) -> str:
    """The coarsest rows that answer `window`: per day of everyone for a timeline of
    everyone; per participant over all time when the window has no time bounds."""
    if per_day:
        if "user_id" in window:
            return DAILY
        return DAY if "timestamp" in window else TIMELINE
    return DAILY if "timestamp" in window else PARTICIPANT


async def rollup_rows(
    window: dict[str, Any],
    level: str = DAILY,
    kinds: tuple[TelemetryKind, ...] = KINDS,
) -> list[dict[str, Any]] | None:
    """The rows at `level` of `kinds` inside `window`, up to the last acknowledged
    write; None when the window needs the records (mid-day bounds, other filters, no
    rollups yet)."""
    if set(window) - {"user_id", "timestamp", "study_id"}:
        return None
    days = _day_bounds(window)
    if days is None:
        return None
    query: dict[str, Any] = {} if level == DAILY else {"level": level}
    if "study_id" in window:
        studies = _studies(window["study_id"])
        if studies is None:
            return None
        query["study"] = studies
    state = await read_state()
    mark = state.get("folded_before") if state else None
    if state is None or mark is None:
        return None
    zones = await zones_counted_in(state)
    if len(kinds) == 1:
        query["kind"] = kinds[0].key
    if "user_id" in window:
        query["user_id"] = window["user_id"]
    if days:
        query["day"] = days
    rows: dict[Key, dict[str, Any]] = {}
    async for row in collection_of(level).find(query, {"_id": 0, "level": 0}):
        rows[row_key(row)] = row
    # A row newer than the mark is being folded right now: then each unfolded record
    # is checked against its row; otherwise the database sums the unfolded records.
    folding = any(row.get("folded_to", mark) > mark for row in rows.values())
    for kind in kinds:
        unfolded = {**window, "received_at": {"$gte": mark}}
        if folding:
            async for record in kind.collection.find(unfolded, FIELDS):
                mine: dict[Key, dict[str, Any]] = {}  # the record's own sums at `level`
                count_into(mine, kind, record, zones, level)
                (key,) = mine
                row = rows.get(key)
                if row is None or record["received_at"] >= row.get("folded_to", mark):
                    add_to(rows, key, mine[key], DAY_MAPS.get(level))
            continue
        for group in await _minute_sums(kind, unfolded, zones):
            add_at(level, rows, group["key"], group)
    return list(rows.values())


def _studies(scope: Any) -> Any:
    """The rows' `study` filter for a window's `study_id` (a credential's scope: one
    study, or `$in` several; None stands for `default`); None for any other shape."""
    if scope is None or isinstance(scope, str):
        return scope or ""
    if isinstance(scope, dict) and set(scope) == {"$in"}:
        return {"$in": [study or "" for study in scope["$in"]]}
    return None


async def _minute_sums(
    kind: TelemetryKind, match: dict[str, Any], zones: StudyZones
) -> list[dict[str, Any]]:
    """The records matching `match` summed per participant, minute and emotion, by the
    database (it returns a few sums, not the records). A minute lies in one hour of
    one local day in every time zone (their offsets are whole minutes)."""
    key = {
        "study": "$study_id",
        "user_id": "$user_id",
        "minute": {"$dateToString": {"format": "%Y-%m-%dT%H:%M", "date": "$timestamp"}},
    }
    if kind is SENTIMENTS:
        key["emotion"] = "$emotion"
    pipeline = [
        {"$match": match},
        {
            "$group": {
                "_id": key,
                "records": {"$sum": 1},
                "intensity_sum": {"$sum": "$intensity" if kind is SENTIMENTS else 0},
                "first": {"$min": "$timestamp"},
                "last": {"$max": "$timestamp"},
            }
        },
    ]
    groups = await (await kind.collection.aggregate(pipeline)).to_list()
    for group in groups:
        group_key = group["_id"]
        minute = datetime.strptime(group_key["minute"], "%Y-%m-%dT%H:%M")
        local_day, hour = local_day_and_hour(minute, zones.zone(group_key.get("study")))
        group["local_day"], group["hours"] = local_day, 1 << hour
        group["key"] = Key(
            kind.key,
            row_study(group_key.get("study")),
            group_key["user_id"],
            _day(minute),
            local_day,
            group_key.get("emotion", ""),
        )
    return groups
