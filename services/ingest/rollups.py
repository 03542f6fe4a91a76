"""Daily rollups: per participant, UTC day and emotion, the count, intensity sum and
first and last time of the records, kept on every write so that totals, timelines
and participant tables read a few rows instead of every record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import pymongo
from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from services.common.timestamps import stored_now
from services.ingest.kinds import GPS_FIXES, SENTIMENTS, TelemetryKind
from services.ingest.models import DailyRollup

logger = logging.getLogger("emogo.ingest")


def _rollup_key(kind: TelemetryKind, document: dict[str, Any]) -> tuple[str, str, str, str]:
    emotion = document.get("emotion", "") if kind is SENTIMENTS else ""
    return kind.key, document["user_id"], document["timestamp"].strftime("%Y-%m-%d"), emotion


async def add_to_rollups(kind: TelemetryKind, documents: list[dict[str, Any]]) -> None:
    """Counts newly stored records into their participant's day."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for document in documents:
        group = groups.setdefault(
            _rollup_key(kind, document),
            {"count": 0, "sum": 0.0, "first": document["timestamp"], "last": document["timestamp"]},
        )
        group["count"] += 1
        group["sum"] += document.get("intensity", 0.0) if kind is SENTIMENTS else 0.0
        group["first"] = min(group["first"], document["timestamp"])
        group["last"] = max(group["last"], document["timestamp"])
    if not groups:
        return
    await DailyRollup.get_pymongo_collection().bulk_write(
        [
            UpdateOne(
                {"kind": key[0], "user_id": key[1], "day": key[2], "emotion": key[3]},
                {
                    "$inc": {"count": group["count"], "intensity_sum": group["sum"]},
                    "$min": {"first": group["first"]},
                    "$max": {"last": group["last"]},
                },
                upsert=True,
            )
            for key, group in groups.items()
        ],
        ordered=False,
    )


async def delete_rollups_of(user_id: str) -> None:
    await DailyRollup.get_pymongo_collection().delete_many({"user_id": user_id})


# A recount reads every record; it gets more than one operation's usual deadline.
RECOUNT_TIMEOUT_SECONDS = 600.0


async def rebuild_rollups(received_before: datetime | None = None) -> int:
    """Recounts the rollups from the records (data stored before rollups existed, or
    after a failure), counting only records received before `received_before` if given."""
    rollups = DailyRollup.get_pymongo_collection()
    query = {} if received_before is None else {"received_at": {"$not": {"$gte": received_before}}}
    written = 0
    with pymongo.timeout(RECOUNT_TIMEOUT_SECONDS):
        await rollups.delete_many({})
        for kind in (SENTIMENTS, GPS_FIXES):
            batch: list[dict[str, Any]] = []
            async for document in kind.collection.find(
                query, {"user_id": 1, "timestamp": 1, "emotion": 1, "intensity": 1}
            ):
                batch.append(document)
                if len(batch) >= 5000:
                    await add_to_rollups(kind, batch)
                    written += len(batch)
                    batch = []
            await add_to_rollups(kind, batch)
            written += len(batch)
    return written


async def ensure_rollups() -> None:
    """At start-up: rebuild the rollups when they do not add up to the records (data
    from before they existed, or counts a crash kept from being written)."""
    counted = await (
        await DailyRollup.get_pymongo_collection().aggregate(
            [{"$group": {"_id": "$kind", "count": {"$sum": "$count"}}}]
        )
    ).to_list()
    in_rollups = {row["_id"]: row["count"] for row in counted}
    for kind in (SENTIMENTS, GPS_FIXES):
        if await kind.collection.estimated_document_count() != in_rollups.get(kind.key, 0):
            await rebuild_rollups()
            return


class RollupWriter:
    """Gathers the counts of newly stored records and writes them together every
    moment, so a single-record write costs one insert, not an insert and an update.
    Reads flush first, so this process's own writes are always counted.

    A database failure leaves the counts unsure: a flush may have been written in
    part, and a write that timed out may still have been stored. Then nothing is
    flushed until every write of unknown outcome is past (`settle_seconds` after the
    last failure); the rollups are recounted from the records received before that
    moment, and what was stored since is added from memory. So the rollups add up
    to the records again after any crash, without counting anything twice."""

    FLUSH_SECONDS = 0.2

    def __init__(self) -> None:
        self._pending: list[tuple[TelemetryKind, dict[str, Any]]] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._unsure_since: datetime | None = None
        self.settle_seconds = 15.0

    def add(self, kind: TelemetryKind, documents: list[dict[str, Any]]) -> None:
        self._pending.extend((kind, document) for document in documents)

    def mark_unsure(self) -> None:
        """A write failed with an unknown outcome, or a flush failed part-way."""
        self._unsure_since = stored_now()

    async def flush(self) -> None:
        async with self._lock:
            if self._unsure_since is not None and not await self._recount():
                return
            pending, self._pending = self._pending, []
            try:
                for kind in (SENTIMENTS, GPS_FIXES):
                    await add_to_rollups(kind, [doc for k, doc in pending if k is kind])
            except PyMongoError:
                self._pending = pending + self._pending
                self.mark_unsure()
                raise

    async def _recount(self) -> bool:
        """Recounts once the failure has settled; False while it has not yet."""
        assert self._unsure_since is not None
        cutoff = stored_now() - timedelta(seconds=self.settle_seconds)
        if cutoff < self._unsure_since:
            return False
        recounted = await rebuild_rollups(received_before=cutoff)
        self._pending = [(k, d) for k, d in self._pending if d["received_at"] >= cutoff]
        self._unsure_since = None
        logger.warning("rollups recounted after a database failure", extra={"records": recounted})
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:
                logger.warning("rollup flush failed", exc_info=True)

    def start(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


ROLLUPS = RollupWriter()


def _day_bounds(window: dict[str, Any]) -> dict[str, str] | None:
    """The rollup filter on `day` for a window whose bounds fall on UTC midnights;
    None when a bound is mid-day (then only the records can answer)."""
    bounds = window.get("timestamp", {})
    days: dict[str, str] = {}
    for operator, instant in bounds.items():
        if (instant.hour, instant.minute, instant.second, instant.microsecond) != (0, 0, 0, 0):
            return None
        days[operator] = instant.strftime("%Y-%m-%d")
    return days


async def rollup_rows(window: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rollups inside `window`, or None when the window needs the records."""
    if set(window) - {"user_id", "timestamp"}:
        return None
    days = _day_bounds(window)
    if days is None:
        return None
    await ROLLUPS.flush()
    query: dict[str, Any] = {}
    if "user_id" in window:
        query["user_id"] = window["user_id"]
    if days:
        query["day"] = days
    found = DailyRollup.get_pymongo_collection().find(query, {"_id": 0})
    return await found.to_list()
