"""Reading a page of time-sorted records one bounded time window at a time.

A sorted, limited query costs the embedded database (SecantusDB) every document
that matches it, not just the page: on a semester of one class (700 k GPS fixes)
the seed's `GET /api/gps?limit=100` read all of them, 15 s. Here a page is read in
*bands* of time walking away from where it starts (a minute first), each four
times wider than the last, until the page is full or the span is exhausted, so a page costs
about what lies in the last band, in proportion to the page, not to the history.
Stretches with no data (a participant who stopped, a study that closed) are
jumped over by `DaysWithData`, the days the daily rollups know of, so a gap costs
nothing either. The result is exactly what the one big query gave: the bands are
disjoint and taken in the page's order.

When the day counts are known, the first band is planned from them (the records of
a day taken as spread evenly over it) to hold the page with a margin, so a page is
usually one query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from services.common.web.pagination import Order, TimeCursor
from services.common.web.timestamps import EARLIEST_PLAUSIBLE

FIRST_BAND = timedelta(minutes=1)
GROWTH = 4
MAX_BAND = timedelta(days=100 * 366)
# A planned band aims at this many times the records still wanted.
PLAN_MARGIN = 1.25
MAX_PLANNED_DAYS = 400
ONE_MS = timedelta(milliseconds=1)  # stored times are whole milliseconds
ONE_DAY = timedelta(days=1)
# A stream reads about this many records per query.
STREAM_BAND_RECORDS = 20_000


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None) if instant.tzinfo else instant


def _day_start(day: str) -> datetime:
    return datetime.strptime(day, "%Y-%m-%d")


@dataclass(frozen=True)
class DaysWithData:
    """The UTC days that have records, with about how many (at least every day that
    has one: a day listed may have none any more)."""

    counts: dict[str, int]

    def has(self, day: str) -> bool:
        return self.counts.get(day, 0) > 0

    def newest_before(self, day: str) -> str | None:
        return max((d for d, n in self.counts.items() if d < day and n > 0), default=None)

    def oldest_after(self, day: str) -> str | None:
        return min((d for d, n in self.counts.items() if d > day and n > 0), default=None)


@dataclass
class Span:
    """Where records may lie: [low, high), naive UTC, as stored."""

    low: datetime
    high: datetime

    @classmethod
    def of(cls, query: dict[str, Any], ceiling: datetime) -> Span:
        bounds = query.get("timestamp", {})
        low = bounds.get("$gte", EARLIEST_PLAUSIBLE)
        high = bounds.get("$lt", ceiling)
        return cls(_naive(low), _naive(high))


class BandedReader:
    """Finds the records of `query` (filters on `timestamp` only as `$gte`/`$lt`)
    band by band; `ceiling` is later than any stored time."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        query: dict[str, Any],
        ceiling: datetime,
        days: DaysWithData | None,
        projection: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        self.collection = collection
        # Times past `now` are rare (clocks ahead): a newest-first page looks there
        # first in one band of its own, then walks down from `now`.
        self.now = _naive(now) if now is not None else None
        self.span = Span.of(query, _naive(ceiling))
        self.rest = {k: v for k, v in query.items() if k != "timestamp"}
        self.days = days
        self.projection = projection

    async def _find(
        self,
        bounds: dict[str, Any] | datetime,  # a range of times, or one instant
        order: Order,
        limit: int,
        extra: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        direction = 1 if order is Order.ASC else -1
        found = self.collection.find(
            {**self.rest, "timestamp": bounds, **(extra or {})}, self.projection
        )
        found = found.sort([("timestamp", direction), ("_id", direction)])
        return await found.limit(limit).to_list()

    async def page(
        self, order: Order, want: int, cursor: TimeCursor | None
    ) -> list[dict[str, Any]]:
        """The first `want` records in `order` after `cursor`."""
        low, high = self.span.low, self.span.high
        found: list[dict[str, Any]] = []
        if cursor is not None:
            at = _naive(datetime.fromtimestamp(cursor.epoch_ms / 1000, UTC))
            if low <= at < high:  # the records sharing the cursor's instant come first
                beyond = "$gt" if order is Order.ASC else "$lt"
                same = {"_id": {beyond: ObjectId(cursor.record_id)}}
                found += await self._find(at, order, want, same)
            if order is Order.ASC:
                low = max(low, at + ONE_MS)
            else:
                high = min(high, at)
        descending = order is Order.DESC
        if descending and self.now is not None and low < self.now < high and len(found) < want:
            ahead = await self._find({"$gte": self.now, "$lt": high}, order, want - len(found))
            found += ahead
            high = self.now
        width: timedelta | None = None  # planned from the day counts when known
        while len(found) < want and low < high:
            edge = high if descending else low
            skipped = self._skip_down(low, high) if descending else self._skip_up(low, high)
            if skipped != edge:  # past a gap: plan afresh
                edge, width = skipped, None
                high, low = (skipped, low) if descending else (high, skipped)
            if low >= high:
                break
            width = width or self._planned_width(edge, want - len(found), descending)
            width = min(width, high - low)  # never past the span (nor the calendar's end)
            if descending:
                start = max(low, high - width)
                found += await self._find({"$gte": start, "$lt": high}, order, want - len(found))
                high = start
            else:
                end = min(high, low + width)
                found += await self._find({"$gte": low, "$lt": end}, order, want - len(found))
                low = end
            width = min(width * GROWTH, MAX_BAND)  # fewer than planned: look wider
        return found

    def _planned_width(self, edge: datetime, wanted: int, descending: bool) -> timedelta:
        """How far from `edge` about `wanted` records lie (with a margin), assuming each
        day's records spread evenly over it; the first band when days are unknown."""
        if self.days is None:
            return FIRST_BAND
        need = wanted * PLAN_MARGIN
        at = edge
        for _ in range(MAX_PLANNED_DAYS):
            day = (at - ONE_MS if descending else at).strftime("%Y-%m-%d")
            start = _day_start(day)
            portion = (at - start) if descending else (start + ONE_DAY - at)
            per_day = self.days.counts.get(day, 0)
            available = per_day * portion / ONE_DAY
            if available >= need:
                reach = abs(at - edge) + ONE_DAY * (need / per_day)
                return max(FIRST_BAND, reach)
            need -= available
            at = start if descending else start + ONE_DAY
        return max(FIRST_BAND, abs(at - edge))

    def _skip_down(self, low: datetime, high: datetime) -> datetime:
        """`high`, or the end of the newest day below it that has records."""
        if self.days is None:
            return high
        day = (high - ONE_MS).strftime("%Y-%m-%d")
        if self.days.has(day):
            return high
        earlier = self.days.newest_before(day)
        return low if earlier is None else min(high, _day_start(earlier) + ONE_DAY)

    def _skip_up(self, low: datetime, high: datetime) -> datetime:
        """`low`, or the start of the oldest day from it on that has records."""
        if self.days is None:
            return low
        day = low.strftime("%Y-%m-%d")
        if self.days.has(day):
            return low
        later = self.days.oldest_after(day)
        return high if later is None else max(low, _day_start(later))

    async def walk(self, batch_size: int) -> AsyncIterator[dict[str, Any]]:
        """Every record, oldest first, in bands of about `STREAM_BAND_RECORDS`."""
        low, high = self.span.low, self.span.high
        for start, end in self._stream_bands(low, high):
            bounds = {"$gte": start, "$lt": end}
            direction = [("timestamp", 1), ("_id", 1)]
            found = self.collection.find({**self.rest, "timestamp": bounds}, self.projection)
            found = found.sort(direction).batch_size(batch_size)
            try:
                async for document in found:
                    yield document
            finally:
                await found.close()

    def _stream_bands(self, low: datetime, high: datetime) -> list[tuple[datetime, datetime]]:
        if self.days is None:
            return [(low, high)]
        bands: list[tuple[datetime, datetime]] = []
        start, gathered = low, 0
        for day in sorted(d for d, n in self.days.counts.items() if n > 0):
            end = _day_start(day) + ONE_DAY
            if end <= low:
                continue
            gathered += self.days.counts[day]
            if gathered >= STREAM_BAND_RECORDS and end < high:
                bands.append((start, end))
                start, gathered = end, 0
        bands.append((start, high))
        return bands
