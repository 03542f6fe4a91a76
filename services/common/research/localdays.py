"""Local days: the calendar days of a study's time zone, in which every per-day figure
is counted (a Taipei course's evening report belongs to that evening, not to the UTC
day after). A local day lasts 23 or 25 hours where daylight saving time starts or
ends; hours are counted from its midnight, so such a day has hours 0-22 or 0-24.

Pure functions; owned by no service (ingest counts in local days, the gateway reports
them).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)


@lru_cache(maxsize=64)
def zone_named(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=16_384)
def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """When `day` starts in `zone`, as naive UTC (the stored form). Where a zone skips
    midnight itself, the day starts at the first instant that exists."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def local_day_and_hour(instant: datetime, zone: ZoneInfo) -> tuple[str, int]:
    """The local day of an instant (naive: UTC, as stored), "YYYY-MM-DD", and the hour of
    that day it falls in, counted from the day's midnight (0-24)."""
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC).replace(tzinfo=None)
    day = instant.replace(tzinfo=UTC).astimezone(zone).date()
    hour = int((instant - local_midnight(day, zone)) // HOUR)
    return day.isoformat(), min(max(hour, 0), 24)


def whole_days(span: dict[str, datetime], zone: ZoneInfo) -> dict[str, datetime]:
    """A time span (`$gte`, `$lt`, naive UTC) widened to whole local days: from the
    midnight its start falls after to the midnight after its end. A per-day figure of
    such a span is that of whole days, whatever span was asked for."""
    widened = dict(span)
    if "$gte" in span:
        day = date.fromisoformat(local_day_and_hour(span["$gte"], zone)[0])
        widened["$gte"] = local_midnight(day, zone)
    if "$lt" in span:
        last = span["$lt"] - timedelta(microseconds=1)
        day = date.fromisoformat(local_day_and_hour(last, zone)[0])
        widened["$lt"] = local_midnight(day + timedelta(days=1), zone)
    return widened


def hours_in(day: str, zone: ZoneInfo) -> int:
    """How long the local day lasts: 24, or 23 / 25 at daylight-saving changes."""
    start = date.fromisoformat(day)
    length = local_midnight(start + timedelta(days=1), zone) - local_midnight(start, zone)
    return round(length / HOUR)


def local_today(now: datetime, zone: ZoneInfo) -> str:
    aware = now if now.tzinfo else now.replace(tzinfo=UTC)
    return aware.astimezone(zone).date().isoformat()


def days_from(first: str, last: str) -> list[str]:
    """Every day from `first` to `last`, both included."""
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def hour_count(mask: int) -> int:
    """How many hours a bit mask of hours (bit h: hour h of the day) has."""
    return mask.bit_count()
