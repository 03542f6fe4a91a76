"""Instants as phones write them, in UTC to the millisecond."""

from datetime import UTC, datetime, timedelta

import pytest

from services.common.web.timestamps import check_plausible, parse_instant

EXPECTED = datetime(2025, 11, 23, 3, 8, 40, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2025-11-23T03:08:40.123Z",
        "2025-11-23T03:08:40.123+00:00",
        "2025-11-23T11:08:40.123+08:00",
        "2025-11-23T03:08:40.123999",  # no offset: UTC; microseconds cut to milliseconds
        " 2025-11-23T03:08:40.123Z ",
        1763867320.123,
        1763867320123,  # JavaScript milliseconds
        "1763867320.123",
    ],
)
def test_forms_of_the_same_instant(value: str | float) -> None:
    parsed = parse_instant(value)
    assert parsed == EXPECTED
    assert parsed.tzinfo is UTC


def test_a_date_alone_is_midnight_utc() -> None:
    assert parse_instant("2025-11-23") == datetime(2025, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "soon", "2025-13-01", "23/11/2025", True, 1e300, "nan"])
def test_what_is_not_an_instant(value: str | float) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601|range|finite"):
        parse_instant(value)


def test_plausibility() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    check_plausible(now + timedelta(hours=23), now, timedelta(days=1))
    with pytest.raises(ValueError, match="ahead of the server's clock"):
        check_plausible(now + timedelta(hours=25), now, timedelta(days=1))
    with pytest.raises(ValueError, match="unset clock"):
        check_plausible(datetime(1970, 1, 1, tzinfo=UTC), now, timedelta(days=1))


def test_a_span_widened_to_whole_local_days() -> None:
    from datetime import datetime

    from services.common.research.localdays import whole_days, zone_named

    taipei = zone_named("Asia/Taipei")  # UTC+8: local midnight is 16:00 UTC the day before
    span = {"$gte": datetime(2026, 3, 4, 3, 0), "$lt": datetime(2026, 3, 4, 3, 5)}
    assert whole_days(span, taipei) == {
        "$gte": datetime(2026, 3, 3, 16, 0),
        "$lt": datetime(2026, 3, 4, 16, 0),
    }
    # An end at a midnight itself stays there; a span with one end keeps one.
    exact = {"$gte": datetime(2026, 3, 3, 16, 0), "$lt": datetime(2026, 3, 5, 16, 0)}
    assert whole_days(exact, taipei) == exact
    assert whole_days({"$lt": datetime(2026, 3, 4, 17, 0)}, taipei) == {
        "$lt": datetime(2026, 3, 5, 16, 0)
    }
    # Where daylight saving time starts, the day is 23 hours long.
    berlin = zone_named("Europe/Berlin")
    spring = {"$gte": datetime(2026, 3, 29, 12, 0), "$lt": datetime(2026, 3, 29, 13, 0)}
    assert whole_days(spring, berlin) == {
        "$gte": datetime(2026, 3, 28, 23, 0),
        "$lt": datetime(2026, 3, 29, 22, 0),
    }
