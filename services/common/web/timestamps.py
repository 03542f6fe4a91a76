"""Instants as phones and people write them, turned into aware UTC datetimes.

Accepted: ISO 8601 with an offset or `Z` (converted to UTC), ISO 8601 without one
(taken as UTC), a date alone (midnight UTC), and epoch seconds; numbers of 1e11 and
more are epoch milliseconds (JavaScript's `Date.now()`), since 1e11 seconds lies
past the year 5000. MongoDB keeps milliseconds, so instants are cut to milliseconds
here: what a write returns is exactly what a later read returns.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from services.common.web.errors import field_error

EPOCH_MILLISECONDS_FROM = 1e11
# Earlier instants are almost always an unset phone clock (0 = 1970-01-01).
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
# ASCII digits only: `\d` would take other scripts' digits (١٢) as a number.
_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")
ISO_EXAMPLE = "2025-11-23T03:08:40Z"


def parse_instant(value: str | float) -> datetime:
    """The instant `value` names, in UTC to the millisecond. ValueError says why not."""
    if isinstance(value, bool):
        raise ValueError(f"must be an ISO 8601 date-time such as {ISO_EXAMPLE} or epoch seconds")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.match(text):
            return _from_epoch(float(text))
        try:
            instant = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"must be an ISO 8601 date-time such as {ISO_EXAMPLE} or epoch seconds, "
                f"got {value[:40]!r}"
            ) from None
        instant = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
        return truncate_to_milliseconds(instant)
    return _from_epoch(float(value))


def _from_epoch(number: float) -> datetime:
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    seconds = number / 1000 if abs(number) >= EPOCH_MILLISECONDS_FROM else number
    try:
        instant = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"is out of range as epoch seconds: {number}") from None
    return truncate_to_milliseconds(instant)


def truncate_to_milliseconds(instant: datetime) -> datetime:
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def stored_now() -> datetime:
    """The server's time as MongoDB stores it (milliseconds), so what a write returns
    equals what a later read gives."""
    return truncate_to_milliseconds(datetime.now(UTC))


def check_plausible(instant: datetime, now: datetime, max_ahead: timedelta) -> None:
    """Refuses instants from an unset clock or too far ahead of the server's."""
    if instant < EARLIEST_PLAUSIBLE:
        raise ValueError(
            f"is before {EARLIEST_PLAUSIBLE.date().isoformat()}, which usually means an unset clock"
        )
    if instant > now + max_ahead:
        hours = max_ahead.total_seconds() / 3600
        raise ValueError(
            f"is more than {hours:g} h ahead of the server's clock "
            f"({now.isoformat(timespec='seconds')}); check the device's clock and time zone"
        )


def recorded_at(
    value: str | float | None, now: datetime, max_ahead: timedelta = timedelta(days=1)
) -> datetime:
    """The record's time in UTC: `now` when missing; refused when implausible."""
    if value is None:
        return now
    try:
        instant = parse_instant(value)
        check_plausible(instant, now, max_ahead)
    except ValueError as problem:
        raise field_error("timestamp", str(problem)) from None
    return instant
