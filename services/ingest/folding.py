"""Keeping the daily rollups current (services.ingest.rollups has their shape).

- One worker at a time (a lease in the state document) *folds* the tail: the records
  received in `[folded_before, now - settle)` are added to their rows, then
  `folded_before` moves on. A row is moved on only from a mark at or before the
  fold's start, so a fold cut short by a crash or a database failure, done again by
  whoever holds the lease next, adds nothing twice; a row already past the start is
  recounted whole from its records. `settle` is longer than any write may take
  (twice the database deadline), so no write still in flight can land behind the
  mark.
- When the rows do not add up to the records at start-up (rows lost, rows of an
  older version, or data from before rollups existed), `folded_before` is cleared:
  readers count from the records until a full recount has been written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pymongo
from pymongo import DeleteOne, UpdateOne
from pymongo.errors import BulkWriteError

from services.common.research.studies import DEFAULT_STUDY, StudyZones
from services.ingest.inserts import DUPLICATE_KEY
from services.ingest.kinds import KINDS, TelemetryKind
from services.ingest.models import DailyRollup, RollupState, RollupTotal
from services.ingest.rollups import (
    CALENDAR,
    DAILY,
    DAY,
    FIELDS,
    KEY_FIELDS,
    PARTICIPANT,
    STATE_ID,
    TIMELINE,
    VERSION,
    WRITE_BATCH,
    Key,
    add_at,
    collection_of,
    count_into,
    received_before,
    row_key,
    upserts,
)

logger = logging.getLogger("emogo.ingest")

# The sums a fold keeps current beside the daily rows, what each is per (a participant,
# a day, a study), and the key fields that are "" at that level.
TOTALS = (PARTICIPANT, CALENDAR, TIMELINE, DAY)
MEMBER_FIELD = {PARTICIPANT: "user_id", CALENDAR: "user_id", TIMELINE: "study", DAY: "day"}
BLANK_FIELDS = {
    PARTICIPANT: ("day",),
    CALENDAR: ("day",),
    TIMELINE: ("user_id", "day"),
    DAY: ("user_id",),
}

# A full recount reads every record; it gets more than one operation's deadline.
RECOUNT_TIMEOUT_SECONDS = 600.0


async def _recount_groups(
    kind: TelemetryKind,
    groups: set[tuple[str, str]],
    upto: datetime,
    zones: StudyZones,
    newer_only: bool = False,
) -> list[Any]:
    """The writes that make the rows of these (participant, day) groups exact up to
    `upto`, in every study: each group's records counted whole, emptied rows removed;
    `newer_only` leaves rows already folded past `upto` as they are."""
    writes: list[Any] = []
    for user_id, day in sorted(groups):
        start = datetime.strptime(day, "%Y-%m-%d")
        # Received after `upto` is left out here, not in the query: a condition on
        # `received_at` beside the index's fields made the database scan everything.
        query = {"user_id": user_id, "timestamp": {"$gte": start, "$lt": start + timedelta(days=1)}}
        rows: dict[Key, dict[str, Any]] = {}
        async for record in kind.collection.find(query, FIELDS):
            received = record.get("received_at")
            if received is None or received < upto:
                count_into(rows, kind, record, zones)
        writes += upserts(rows.values(), upto, newer_only=newer_only)
        group = {"kind": kind.key, "user_id": user_id, "day": day}
        kept = {(key.study, key.local_day, key.emotion) for key in rows}
        writes += await _emptied(collection_of(DAILY), group, kept, upto if newer_only else None)
    return writes


async def _emptied(
    collection: Any,
    group: dict[str, Any],
    kept: set[tuple[str, str, str]],
    older_than: datetime | None = None,
) -> list[DeleteOne]:
    """Deletes of the group's rows whose (study, local day, emotion) no longer has
    records (only those folded before `older_than`, when given), each by its whole key
    (a `$nin` on emotion made the database scan every row)."""
    stored = collection.find(group, {"_id": 0, "study": 1, "local_day": 1, "emotion": 1})
    older = {"folded_to": {"$lt": older_than}} if older_than else {}
    deletes = []
    async for row in stored:
        key = (row["study"], row.get("local_day", ""), row["emotion"])
        if key not in kept:
            named = {"study": key[0], "local_day": key[1], "emotion": key[2]}
            deletes.append(DeleteOne({**group, **named, **older}))
    return deletes


async def fold(
    start: datetime, upto: datetime, zones: StudyZones, counted_in: dict[str, str] | None = None
) -> int:
    """Adds the records received in [start, upto) to their rows; returns how many
    (participant, day) groups they touched.

    Each row is moved on only from a mark at or before `start` (its `folded_to`), so
    its increment is applied once: a row that is already past `start` (a fold cut
    short, or another worker's) is recounted whole instead. The cost follows the
    records received, not the groups' history, and the day totals move on with the
    mark in one update."""
    touched = 0
    day_counts: dict[str, int] = {}
    for kind in KINDS:
        received = {"received_at": {"$gte": start, "$lt": upto}}
        tail: dict[Key, dict[str, Any]] = {}
        async for record in kind.collection.find(received, FIELDS):
            count_into(tail, kind, record, zones)
        refused = await _add_to_rows(DAILY, tail.values(), start, upto)
        if refused:
            groups = {(row["user_id"], row["day"]) for row in refused}
            recounted = await _recount_groups(kind, groups, upto, zones, newer_only=True)
            await _write_newer(DAILY, recounted)
        recounted_days: set[str] = set()
        for level in TOTALS:
            sums: dict[Key, dict[str, Any]] = {}
            for key, row in tail.items():
                add_at(level, sums, key, row)
            field = MEMBER_FIELD[level]
            members = {row[field] for row in await _add_to_rows(level, sums.values(), start, upto)}
            await recount_totals(kind, level, members, upto)
            if level == DAY:
                recounted_days = members
        for key, row in tail.items():
            if key.day not in recounted_days:
                name = f"days.{kind.key}.{key.day}"
                day_counts[name] = day_counts.get(name, 0) + row["records"]
        touched += len({(key.user_id, key.day) for key in tail})
    change: dict[str, Any] = {"$max": {"folded_before": upto}}
    # Studies made since the zones were last noted (`counted_in`: the state's).
    noted = counted_in or {}
    added = {study: name for study, name in _stated(zones).items() if noted.get(study) != name}
    if added:
        change["$set"] = {f"zones.{study}": name for study, name in added.items()}
    if day_counts:
        change["$inc"] = day_counts
    await RollupState.get_pymongo_collection().update_one(
        {"_id": STATE_ID, "folded_before": start}, change
    )
    return touched


async def _add_to_rows(
    level: str, sums: Iterable[dict[str, Any]], start: datetime, upto: datetime
) -> list[dict[str, Any]]:
    """Adds each of `sums` to its row (made when missing) if the row is folded to
    `start` or before; returns the sums whose row was past that."""
    sums = list(sums)
    fields = KEY_FIELDS + (("level",) if level != DAILY else ())
    writes = [
        UpdateOne(
            {
                **{k: part[k] for k in fields if k != "level"},
                **({"level": level} if level != DAILY else {}),
                "folded_to": {"$lte": start},
            },
            _increment(part, upto),
            upsert=True,
        )
        for part in sums
    ]
    refused: list[dict[str, Any]] = []
    for offset in range(0, len(writes), WRITE_BATCH):
        try:
            chunk = writes[offset : offset + WRITE_BATCH]
            await collection_of(level).bulk_write(chunk, ordered=False)
        except BulkWriteError as failure:
            # The row exists but is past `start`: the upsert's insert hit its unique key.
            refused += [sums[offset + index] for index in _duplicates_only(failure)]
    return refused


def _increment(part: dict[str, Any], upto: datetime) -> dict[str, Any]:
    """The update that adds `part` to its row, hours and local days included."""
    added: dict[str, Any] = {"records": part["records"], "intensity_sum": part["intensity_sum"]}
    hours: dict[str, Any] = {"hours": {"or": part["hours"]}}
    for local_day, records in part.get("days", {}).items():  # a calendar or a timeline
        added[f"days.{local_day}"] = records
        if "day_hours" in part:
            hours[f"day_hours.{local_day}"] = {"or": part["day_hours"][local_day]}
        if "day_intensity" in part:
            added[f"day_intensity.{local_day}"] = part["day_intensity"][local_day]
    return {
        "$inc": added,
        "$bit": hours,
        "$min": {"first": part["first"]},
        "$max": {"last": part["last"]},
        "$set": {"folded_to": upto},
    }


def _duplicates_only(failure: BulkWriteError) -> list[int]:
    """The indexes of the writes a unique key refused; any other failure is raised."""
    errors = failure.details.get("writeErrors", [])
    if any(error.get("code") != DUPLICATE_KEY for error in errors):
        raise failure
    return [error["index"] for error in errors]


async def _write_newer(level: str, writes: list[Any]) -> None:
    """Writes recounted rows, except over a row already folded further (another
    worker's newer count stands)."""
    for offset in range(0, len(writes), WRITE_BATCH):
        try:
            chunk = writes[offset : offset + WRITE_BATCH]
            await collection_of(level).bulk_write(chunk, ordered=False)
        except BulkWriteError as failure:
            _duplicates_only(failure)


async def recount_totals(
    kind: TelemetryKind, level: str, members: set[str], upto: datetime
) -> None:
    """Recounts the totals of these participants (or days, or studies) from their daily
    rows; the day totals also go to the state document (`days.<kind>.<day>`), which lets
    a list page skip the days without records."""
    if not members:
        return
    field = MEMBER_FIELD[level]
    totals: dict[Key, dict[str, Any]] = {}
    daily = DailyRollup.get_pymongo_collection().find(
        {"kind": kind.key, field: {"$in": sorted(members)}}, {"_id": 0}
    )
    async for row in daily:
        add_at(level, totals, row_key(row), row)
    writes: list[Any] = upserts(totals.values(), upto, level)
    for member in members:
        kept = {
            (key.study, key.local_day, key.emotion)
            for key in totals
            if getattr(key, field) == member
        }
        # The key's other fields are "" at this level; naming them keeps the index in use.
        other = {name: "" for name in BLANK_FIELDS[level]}
        group = {"kind": kind.key, "level": level, field: member, **other}
        writes += await _emptied(RollupTotal.get_pymongo_collection(), group, kept)
    for offset in range(0, len(writes), WRITE_BATCH):
        await RollupTotal.get_pymongo_collection().bulk_write(
            writes[offset : offset + WRITE_BATCH], ordered=True
        )
    if level == DAY:
        per_day = dict.fromkeys(members, 0)
        for row in totals.values():
            per_day[row["day"]] += row["records"]
        change: dict[str, Any] = {}
        for day, total in per_day.items():
            operator = "$set" if total else "$unset"
            change.setdefault(operator, {})[f"days.{kind.key}.{day}"] = total or ""
        await RollupState.get_pymongo_collection().update_one({"_id": STATE_ID}, change)


async def recount_all(upto: datetime, zones: StudyZones, keep_lease: Any = None) -> int:
    """Recounts every row from the records received before `upto`, in `zones`; returns
    how many records were counted. Only rows that differ from their count are written,
    and rows of groups that no longer have records are removed: a recount after a
    restart rewrites nothing that is already right, so it puts no burst of writes on
    the database (a burst of thousands of rewritten rows stalled other writers of the
    embedded database for seconds)."""
    counted = 0
    days: dict[str, dict[str, int]] = {}
    with pymongo.timeout(RECOUNT_TIMEOUT_SECONDS):
        for kind in KINDS:
            rows: dict[Key, dict[str, Any]] = {}
            async for record in kind.collection.find(received_before(upto), FIELDS):
                count_into(rows, kind, record, zones)
                counted += 1
                if keep_lease is not None and counted % 50_000 == 0:
                    await keep_lease()
            per_level: dict[str, dict[Key, dict[str, Any]]] = {level: {} for level in TOTALS}
            for key, row in rows.items():
                for level, sums in per_level.items():
                    add_at(level, sums, key, row)
            for level, level_rows in ((DAILY, rows), *per_level.items()):
                writes = await _changes(kind, level, level_rows, upto)
                for offset in range(0, len(writes), WRITE_BATCH):
                    chunk = writes[offset : offset + WRITE_BATCH]
                    await collection_of(level).bulk_write(chunk, ordered=False)
            per_day = days.setdefault(kind.key, {})
            for row in per_level[DAY].values():
                per_day[row["day"]] = per_day.get(row["day"], 0) + row["records"]
        # Rows of kinds or levels this version does not keep.
        kinds = [kind.key for kind in KINDS]
        await DailyRollup.get_pymongo_collection().delete_many({"kind": {"$nin": kinds}})
        await RollupTotal.get_pymongo_collection().delete_many(
            {"$or": [{"kind": {"$nin": kinds}}, {"level": {"$nin": list(TOTALS)}}]}
        )
        await RollupState.get_pymongo_collection().update_one(
            {"_id": STATE_ID},
            {
                "$set": {
                    "folded_before": upto,
                    "days": days,
                    "version": VERSION,
                    "zones": _stated(zones),
                    "fallback_zone": zones.fallback,
                }
            },
            upsert=True,
        )
    return counted


# Fields of a stored row that are not its count.
BOOKKEEPING = ("_id", "folded_to", "level")


async def _changes(
    kind: TelemetryKind, level: str, counted: dict[Key, dict[str, Any]], upto: datetime
) -> list[Any]:
    """The writes that make the stored rows of `kind` at `level` equal `counted`: a
    replacement for each row that differs or is missing, a delete for each stored row
    without a count (or a second row of the same key). A row left as it is keeps its
    older `folded_to`, which is still true of it: it counts the same records."""
    query = {"kind": kind.key, **({"level": level} if level != DAILY else {})}
    unchanged: set[Key] = set()
    deletes: list[Any] = []
    async for stored in collection_of(level).find(query):
        key = row_key(stored)
        count = {name: value for name, value in stored.items() if name not in BOOKKEEPING}
        if key not in unchanged and counted.get(key) == count:
            unchanged.add(key)
        elif key not in counted or key in unchanged or not set(KEY_FIELDS) <= set(stored):
            # A row of an older version lacks key fields: its replacement is a new row.
            deletes.append(DeleteOne({"_id": stored["_id"]}))
    changed = (row for key, row in counted.items() if key not in unchanged)
    return deletes + upserts(changed, upto, level)


def _stated(zones: StudyZones) -> dict[str, str]:
    """Zones as the state keeps them: `default` by name (a field name cannot be "")."""
    return {study or DEFAULT_STUDY: name for study, name in zones.names.items()} | {
        DEFAULT_STUDY: zones.name(None)
    }
