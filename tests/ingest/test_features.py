"""The daily mobility features on a synthetic track whose answers are known by hand:
a night at home, two hours at a place 1 km due north, and back."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.ingest.features import (
    EARTH_RADIUS_M,
    Movement,
    StayFinder,
    haversine_m,
    place_days,
    split_by_local_day,
)

HOME = (25.0, 121.5)
# 1 km due north along the meridian: exactly 1000 m by the haversine formula.
WORK = (HOME[0] + math.degrees(1000 / EARTH_RADIUS_M), HOME[1])
DAY = datetime(2025, 3, 3, tzinfo=UTC)


def track() -> list[tuple[datetime, tuple[float, float]]]:
    """00:00-06:00 at home every 10 min (37 fixes), 07:00-09:00 at work every 10 min
    (13 fixes), one fix at home at 09:30."""
    fixes = [(DAY + timedelta(minutes=10 * i), HOME) for i in range(37)]
    fixes += [(DAY + timedelta(hours=7, minutes=10 * i), WORK) for i in range(13)]
    fixes.append((DAY + timedelta(hours=9, minutes=30), HOME))
    return fixes


def test_haversine_of_a_kilometre_north() -> None:
    assert haversine_m(*HOME, *WORK) == pytest.approx(1000.0, abs=1e-6)


def test_distance_radius_of_gyration_and_coverage_by_hand() -> None:
    movement = Movement()
    for at, (latitude, longitude) in track():
        movement.add(latitude, longitude, at.hour)
    assert movement.fixes == 51
    # Home -> work once and back once.
    assert movement.distance_m == pytest.approx(2000.0, abs=1e-6)
    # Two clusters d apart with n_a and n_b fixes: r_g = d * sqrt(n_a * n_b) / (n_a + n_b).
    assert movement.radius_of_gyration_m() == pytest.approx(
        1000 * math.sqrt(38 * 13) / 51, rel=1e-6
    )
    # Hours 0-6 at home, 7-9 at work and home.
    assert len(movement.hours) == 10


def test_stays_places_and_home_time_by_hand() -> None:
    finder = StayFinder()
    for at, (latitude, longitude) in track():
        finder.add(latitude, longitude, at)
    stays = finder.finish()
    # The lone fix at 09:30 lasts no 10 minutes: not a stay.
    assert [(s.arrived, s.left) for s in stays] == [
        (DAY, DAY + timedelta(hours=6)),
        (DAY + timedelta(hours=7), DAY + timedelta(hours=9)),
    ]
    days = place_days(stays, ZoneInfo("UTC"))
    assert days.places == {date(2025, 3, 3): {0, 1}}
    assert days.home_seconds == {date(2025, 3, 3): 6 * 3600.0}


def test_home_is_where_the_nights_are_even_when_days_are_longer() -> None:
    """Nine hours at work in the day, five at home at night: home is home."""
    finder = StayFinder()
    for i in range(31):  # 01:00-06:00
        finder.add(*HOME, DAY + timedelta(hours=1, minutes=10 * i))
    for i in range(55):  # 08:00-17:00
        finder.add(*WORK, DAY + timedelta(hours=8, minutes=10 * i))
    days = place_days(finder.finish(), ZoneInfo("UTC"))
    assert days.home_seconds[date(2025, 3, 3)] == 5 * 3600.0


def test_a_stay_across_midnight_counts_on_both_local_days() -> None:
    zone = ZoneInfo("Asia/Taipei")  # UTC+8: 22:00 local is 14:00 UTC
    start = datetime(2025, 3, 3, 14, tzinfo=UTC)
    finder = StayFinder()
    for i in range(55):  # 22:00 to 07:00 local
        finder.add(*HOME, start + timedelta(minutes=10 * i))
    days = place_days(finder.finish(), zone)
    assert days.home_seconds == {date(2025, 3, 3): 2 * 3600.0, date(2025, 3, 4): 7 * 3600.0}
    pieces = split_by_local_day(start, start + timedelta(hours=9), zone)
    assert [day for day, _, _ in pieces] == [date(2025, 3, 3), date(2025, 3, 4)]


def test_no_fixes_means_no_radius() -> None:
    assert Movement().radius_of_gyration_m() is None
