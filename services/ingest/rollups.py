"""Daily rollups: per kind, participant, UTC day and emotion, the number of records,
their intensity sum and first and last time, so that totals, timelines and
participant tables read a few rows instead of every record.

The records are the only truth, and every count is kept in MongoDB, so any number
of workers and replicas agree without sharing memory:

- A row counts the records of its group received before its `folded_to`.
- `folded_before` (one state document) is the point up to which every row is
  complete. Records received since then (the *tail*, a few seconds of writes) are
  added by each reader from the records themselves, so a write is in every total
  as soon as it is acknowledged, whichever worker stored it.
- One worker at a time (a lease in the state document) *folds* the tail: the groups
  that records received in `[folded_before, now - settle)` touched are recounted
  from their records and written whole, then `folded_before` moves on. Recounting
  a group whole makes a fold idempotent: a fold cut short by a crash or a database
  failure is simply done again by whoever holds the lease next. `settle` is longer
  than any write may take (twice the database deadline), so no write that is still
  in flight can land behind the mark.
- When the rows do not add up to the records at start-up (rows lost, or data from
  before rollups existed), `folded_before` is cleared: readers count from the
  records until a full recount has been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pymongo
from pymongo import DeleteMany, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.common.timestamps import stored_now
from services.common.windows import DaysWithData
from services.ingest.kinds import GPS_FIXES, SENTIMENTS, TelemetryKind
from services.ingest.models import DailyRollup, RollupState

logger = logging.getLogger("emogo.ingest")

STATE_ID = "rollups"
FOLD_SECONDS = 1.0
LEASE_SECONDS = 15.0
# A full recount reads every record; it gets more than one operation's deadline.
RECOUNT_TIMEOUT_SECONDS = 600.0
WRITE_BATCH = 1000
# What a rollup needs of a record.
FIELDS = {"_id": 0, "user_id": 1, "timestamp": 1, "emotion": 1, "intensity": 1, "received_at": 1}

Key = tuple[str, str, str, str]  # kind, user_id, day, emotion


def _day(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d")


def _key(kind: TelemetryKind, record: dict[str, Any]) -> Key:
    emotion = record.get("emotion", "") if kind is SENTIMENTS else ""
    return kind.key, record["user_id"], _day(record["timestamp"]), emotion


def _count_into(
    rows: dict[Key, dict[str, Any]], kind: TelemetryKind, record: dict[str, Any]
) -> None:
    key = _key(kind, record)
    row = rows.get(key)
    if row is None:
        row = rows[key] = {
            "kind": key[0],
            "user_id": key[1],
            "day": key[2],
            "emotion": key[3],
            "records": 0,
            "intensity_sum": 0.0,
            "first": record["timestamp"],
            "last": record["timestamp"],
        }
    row["records"] += 1
    row["intensity_sum"] += record.get("intensity", 0.0) if kind is SENTIMENTS else 0.0
    row["first"] = min(row["first"], record["timestamp"])
    row["last"] = max(row["last"], record["timestamp"])


def _received_before(instant: datetime) -> dict[str, Any]:
    # Records stored before `received_at` existed have none; they count as old.
    return {"received_at": {"$not": {"$gte": instant}}}


def _upserts(rows: Iterable[dict[str, Any]], folded_to: datetime) -> list[UpdateOne]:
    return [
        UpdateOne(
            {k: row[k] for k in ("kind", "user_id", "day", "emotion")},
            {"$set": {**row, "folded_to": folded_to}},
            upsert=True,
        )
        for row in rows
    ]


async def _state() -> dict[str, Any] | None:
    return await RollupState.get_pymongo_collection().find_one({"_id": STATE_ID})


async def _folded_before() -> datetime | None:
    state = await _state()
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


async def rollup_rows(window: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rollups inside `window`, up to the last acknowledged write; None when the
    window needs the records (mid-day bounds, other filters, or no rollups yet)."""
    if set(window) - {"user_id", "timestamp"}:
        return None
    days = _day_bounds(window)
    if days is None:
        return None
    mark = await _folded_before()
    if mark is None:
        return None
    query: dict[str, Any] = {}
    if "user_id" in window:
        query["user_id"] = window["user_id"]
    if days:
        query["day"] = days
    rows: dict[Key, dict[str, Any]] = {}
    async for row in DailyRollup.get_pymongo_collection().find(query, {"_id": 0}):
        rows[(row["kind"], row["user_id"], row["day"], row["emotion"])] = row
    for kind in (SENTIMENTS, GPS_FIXES):
        tail = kind.collection.find({**window, "received_at": {"$gte": mark}}, FIELDS)
        async for record in tail:
            row = rows.get(_key(kind, record))
            if row is None or record["received_at"] >= row.get("folded_to", mark):
                _count_into(rows, kind, record)
    return list(rows.values())


# --- folding -------------------------------------------------------------------------


async def _recount_groups(
    kind: TelemetryKind, groups: set[tuple[str, str]], upto: datetime
) -> list[Any]:
    """The writes that make the rows of these (participant, day) groups exact up to
    `upto`: each group's records counted whole, emptied rows removed."""
    writes: list[Any] = []
    for user_id, day in sorted(groups):
        start = datetime.strptime(day, "%Y-%m-%d")
        query = {
            "user_id": user_id,
            "timestamp": {"$gte": start, "$lt": start + timedelta(days=1)},
            **_received_before(upto),
        }
        rows: dict[Key, dict[str, Any]] = {}
        async for record in kind.collection.find(query, FIELDS):
            _count_into(rows, kind, record)
        writes += _upserts(rows.values(), upto)
        kept = [key[3] for key in rows]
        group = {"kind": kind.key, "user_id": user_id, "day": day, "emotion": {"$nin": kept}}
        writes.append(DeleteMany(group))
    return writes


async def fold(start: datetime, upto: datetime) -> int:
    """Recounts the groups touched by records received in [start, upto); returns how
    many groups."""
    touched = 0
    for kind in (SENTIMENTS, GPS_FIXES):
        received = {"received_at": {"$gte": start, "$lt": upto}}
        groups = {
            (record["user_id"], _day(record["timestamp"]))
            async for record in kind.collection.find(received, {"user_id": 1, "timestamp": 1})
        }
        writes = await _recount_groups(kind, groups, upto)
        for offset in range(0, len(writes), WRITE_BATCH):
            chunk = writes[offset : offset + WRITE_BATCH]
            await DailyRollup.get_pymongo_collection().bulk_write(chunk, ordered=True)
        await _recount_days(kind, {day for _, day in groups})
        touched += len(groups)
    await RollupState.get_pymongo_collection().update_one(
        {"_id": STATE_ID}, {"$max": {"folded_before": upto}}
    )
    return touched


async def _recount_days(kind: TelemetryKind, days: set[str]) -> None:
    """The kind's record count per day in the state document (`days.<kind>.<day>`),
    from the rows: what lets a list page skip the days without records."""
    if not days:
        return
    totals = dict.fromkeys(days, 0)
    rows = DailyRollup.get_pymongo_collection().find(
        {"kind": kind.key, "day": {"$in": sorted(days)}}, {"day": 1, "records": 1}
    )
    async for row in rows:
        totals[row["day"]] += row["records"]
    change: dict[str, Any] = {}
    for day, total in totals.items():
        change.setdefault("$set" if total else "$unset", {})[f"days.{kind.key}.{day}"] = total or ""
    await RollupState.get_pymongo_collection().update_one({"_id": STATE_ID}, change)


async def days_with_data(kind: TelemetryKind, user_id: str | None) -> DaysWithData | None:
    """The days with records of `kind` (of one participant, or of anyone): the folded
    counts and the days of the unfolded tail (which may lie anywhere in time: phones
    send old records too); None before the rollups exist."""
    state = await _state()
    mark = state.get("folded_before") if state else None
    if mark is None:
        return None
    if user_id is None:
        if "days" not in state:  # counted before day totals were kept
            return None
        counts = dict(state["days"].get(kind.key, {}))
    else:
        counts = {}
        rows = DailyRollup.get_pymongo_collection().find(
            {"kind": kind.key, "user_id": user_id}, {"day": 1, "records": 1}
        )
        async for row in rows:
            counts[row["day"]] = counts.get(row["day"], 0) + row["records"]
    tail = {"received_at": {"$gte": mark}}
    if user_id is not None:
        tail["user_id"] = user_id
    async for record in kind.collection.find(tail, {"_id": 0, "timestamp": 1}):
        day = _day(record["timestamp"])
        counts[day] = counts.get(day, 0) + 1
    return DaysWithData(counts=counts)


async def recount_all(upto: datetime, keep_lease: Any = None) -> int:
    """Recounts every row from the records received before `upto`; returns how many
    records were counted. Rows of groups that no longer have records are removed."""
    rollups = DailyRollup.get_pymongo_collection()
    counted = 0
    days: dict[str, dict[str, int]] = {}
    with pymongo.timeout(RECOUNT_TIMEOUT_SECONDS):
        for kind in (SENTIMENTS, GPS_FIXES):
            rows: dict[Key, dict[str, Any]] = {}
            async for record in kind.collection.find(_received_before(upto), FIELDS):
                _count_into(rows, kind, record)
                counted += 1
                if keep_lease is not None and counted % 50_000 == 0:
                    await keep_lease()
            writes = _upserts(rows.values(), upto)
            for offset in range(0, len(writes), WRITE_BATCH):
                await rollups.bulk_write(writes[offset : offset + WRITE_BATCH], ordered=False)
            for row in rows.values():
                per_day = days.setdefault(kind.key, {})
                per_day[row["day"]] = per_day.get(row["day"], 0) + row["records"]
        await rollups.delete_many({"folded_to": {"$ne": upto}})
        await RollupState.get_pymongo_collection().update_one(
            {"_id": STATE_ID}, {"$set": {"folded_before": upto, "days": days}}, upsert=True
        )
    return counted


async def delete_rollups_of(user_id: str) -> None:
    await DailyRollup.get_pymongo_collection().delete_many({"user_id": user_id})


async def ensure_rollups() -> None:
    """At start-up: when the rows and the tail do not add up to the records (rows
    lost, or data from before rollups existed), readers go back to counting records
    until the folding worker has recounted everything."""
    for attempt in range(3):
        rows = await rollup_rows({})
        if rows is not None:
            in_rollups = {kind.key: 0 for kind in (SENTIMENTS, GPS_FIXES)}
            for row in rows:
                in_rollups[row["kind"]] += row["records"]
            counts = {
                kind.key: await kind.collection.estimated_document_count()
                for kind in (SENTIMENTS, GPS_FIXES)
            }
            if counts == in_rollups:
                return
        elif await _state() is None:
            break
        if attempt < 2:  # writes landing between the two counts: look again
            await asyncio.sleep(0.5)
    await RollupState.get_pymongo_collection().update_one(
        {"_id": STATE_ID}, {"$set": {"folded_before": None}}, upsert=True
    )
    logger.info("rollups will be recounted from the records")


class RollupFolder:
    """Runs the folds in whichever worker holds the lease; the others stand by."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle = timedelta(seconds=settle_seconds)
        self.holder = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None

    async def hold_lease(self) -> bool:
        now = stored_now()
        try:
            await RollupState.get_pymongo_collection().find_one_and_update(
                {
                    "_id": STATE_ID,
                    "$or": [{"holder": self.holder}, {"lease_until": {"$not": {"$gt": now}}}],
                },
                {
                    "$set": {
                        "holder": self.holder,
                        "lease_until": now + timedelta(seconds=LEASE_SECONDS),
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:  # another worker holds it
            return False
        return True

    async def step(self) -> None:
        if not await self.hold_lease():
            return
        upto = stored_now() - self.settle
        mark = await _folded_before()
        if mark is None:
            counted = await recount_all(upto, keep_lease=self.hold_lease)
            logger.info("rollups recounted", extra={"records": counted})
        elif upto > mark:
            await fold(mark, upto)

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except PyMongoError as problem:  # the next step does the same work again
                logger.warning("rollup fold failed", extra={"error": type(problem).__name__})
            except Exception:
                logger.exception("rollup fold failed")
            await asyncio.sleep(FOLD_SECONDS)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Let another worker take over at once.
        with contextlib.suppress(PyMongoError):
            await RollupState.get_pymongo_collection().update_one(
                {"_id": STATE_ID, "holder": self.holder}, {"$set": {"lease_until": None}}
            )
