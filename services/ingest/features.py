"""Daily mobility and mood features of one participant, computed while their records
stream by in time order: memory holds one participant's days and stays, never their
fixes. The methods and their sources are in the codebook (services.common.research.codebook,
kind `daily`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

# Mean Earth radius (IUGG), as the haversine formula takes it.
EARTH_RADIUS_M = 6_371_008.8
# A stay: consecutive fixes within STAY_RADIUS_M of its first one for STAY_MINUTES or
# more (Li et al. 2008); stays within PLACE_RADIUS_M of a place's first stay are that place.
STAY_RADIUS_M = 200.0
STAY_MINUTES = 10
PLACE_RADIUS_M = 200.0
# Home is where the night is spent (Saeb et al. 2015): these local hours.
NIGHT_HOURS = (0, 6)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class Mood:
    """One day's sentiments: count and intensity sum, overall and per emotion."""

    count: int = 0
    total: float = 0.0
    emotions: dict[str, list[float]] = field(default_factory=dict)  # emotion: [count, sum]

    def add(self, emotion: str, intensity: float) -> None:
        self.count += 1
        self.total += intensity
        entry = self.emotions.setdefault(emotion, [0, 0.0])
        entry[0] += 1
        entry[1] += intensity


@dataclass
class Movement:
    """One day's fixes: count, hours with a fix, distance between consecutive fixes, and
    the sums the radius of gyration needs (positions in metres on a plane tangent at the
    day's first fix; over a day's range the flattening is far below GPS accuracy)."""

    fixes: int = 0
    hours: set[int] = field(default_factory=set)
    distance_m: float = 0.0
    origin: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_squares: float = 0.0

    def add(self, latitude: float, longitude: float, hour: int) -> None:
        if self.origin is None:
            self.origin = (latitude, longitude)
        if self.last is not None:
            self.distance_m += haversine_m(*self.last, latitude, longitude)
        self.last = (latitude, longitude)
        self.fixes += 1
        self.hours.add(hour)
        x, y = self._plane(latitude, longitude)
        self.sum_x += x
        self.sum_y += y
        self.sum_squares += x * x + y * y

    def _plane(self, latitude: float, longitude: float) -> tuple[float, float]:
        lat0, lon0 = self.origin or (latitude, longitude)
        x = math.radians(longitude - lon0) * math.cos(math.radians(lat0)) * EARTH_RADIUS_M
        return x, math.radians(latitude - lat0) * EARTH_RADIUS_M

    def radius_of_gyration_m(self) -> float | None:
        """sqrt(mean |r - r_cm|^2) = sqrt(mean |r|^2 - |mean r|^2) (González et al. 2008)."""
        if not self.fixes:
            return None
        n = self.fixes
        spread = self.sum_squares / n - (self.sum_x / n) ** 2 - (self.sum_y / n) ** 2
        return math.sqrt(max(0.0, spread))


@dataclass
class Stay:
    latitude: float
    longitude: float
    arrived: datetime
    left: datetime
    place: int = -1


class StayFinder:
    """Stays from fixes in time order (Li et al. 2008): a run of fixes within
    STAY_RADIUS_M of its first fix lasting STAY_MINUTES or more, at the run's mean
    position, from its first fix to its last."""

    def __init__(self) -> None:
        self.stays: list[Stay] = []
        self._anchor: tuple[float, float, datetime] | None = None
        self._last_at: datetime | None = None
        self._sum_lat = self._sum_lon = 0.0
        self._count = 0

    def add(self, latitude: float, longitude: float, at: datetime) -> None:
        if self._anchor is not None:
            if haversine_m(self._anchor[0], self._anchor[1], latitude, longitude) <= STAY_RADIUS_M:
                self._last_at = at
                self._sum_lat += latitude
                self._sum_lon += longitude
                self._count += 1
                return
            self._close_run()
        self._anchor = (latitude, longitude, at)
        self._last_at = at
        self._sum_lat, self._sum_lon, self._count = latitude, longitude, 1

    def _close_run(self) -> None:
        if self._anchor is None or self._last_at is None:
            return
        if self._last_at - self._anchor[2] >= timedelta(minutes=STAY_MINUTES):
            self.stays.append(
                Stay(
                    self._sum_lat / self._count,
                    self._sum_lon / self._count,
                    self._anchor[2],
                    self._last_at,
                )
            )

    def finish(self) -> list[Stay]:
        self._close_run()
        self._anchor = None
        return self.stays


def assign_places(stays: list[Stay]) -> int:
    """Numbers each stay's place (leader clustering, in time order): a stay within
    PLACE_RADIUS_M of a place's first stay is that place. Returns the number of places."""
    leaders: list[tuple[float, float]] = []
    for stay in stays:
        for number, (latitude, longitude) in enumerate(leaders):
            if haversine_m(latitude, longitude, stay.latitude, stay.longitude) <= PLACE_RADIUS_M:
                stay.place = number
                break
        else:
            stay.place = len(leaders)
            leaders.append((stay.latitude, stay.longitude))
    return len(leaders)


def split_by_local_day(
    start: datetime, end: datetime, zone: ZoneInfo
) -> list[tuple[date, datetime, datetime]]:
    """[start, end) cut at local midnights: (local day, piece start, piece end)."""
    pieces = []
    cursor = start
    while cursor < end:
        local = cursor.astimezone(zone)
        next_midnight = datetime.combine(
            local.date() + timedelta(days=1), datetime.min.time(), zone
        )
        piece_end = min(end, next_midnight.astimezone(start.tzinfo))
        pieces.append((local.date(), cursor, piece_end))
        cursor = piece_end
    return pieces


def night_seconds(start: datetime, end: datetime, zone: ZoneInfo) -> float:
    """Seconds of [start, end) between NIGHT_HOURS local time."""
    total = 0.0
    for day, piece_start, piece_end in split_by_local_day(start, end, zone):
        night_start = datetime.combine(day, datetime.min.time(), zone).replace(hour=NIGHT_HOURS[0])
        night_end = datetime.combine(day, datetime.min.time(), zone).replace(hour=NIGHT_HOURS[1])
        overlap = min(piece_end, night_end) - max(piece_start, night_start)
        total += max(0.0, overlap.total_seconds())
    return total


def home_place(stays: list[Stay], zone: ZoneInfo) -> int | None:
    """The place with the most time at night, else with the most time at all."""
    night: dict[int, float] = {}
    overall: dict[int, float] = {}
    for stay in stays:
        night[stay.place] = night.get(stay.place, 0.0) + night_seconds(
            stay.arrived, stay.left, zone
        )
        overall[stay.place] = (
            overall.get(stay.place, 0.0) + (stay.left - stay.arrived).total_seconds()
        )
    for totals in (night, overall):
        if totals and max(totals.values()) > 0:
            return max(totals, key=lambda place: (totals[place], -place))
    return None


@dataclass
class PlaceDays:
    """Per local day: the places with a stay, and the seconds in stays at home."""

    places: dict[date, set[int]] = field(default_factory=dict)
    home_seconds: dict[date, float] = field(default_factory=dict)


def place_days(stays: list[Stay], zone: ZoneInfo) -> PlaceDays:
    assign_places(stays)
    home = home_place(stays, zone)
    days = PlaceDays()
    for stay in stays:
        for day, start, end in split_by_local_day(stay.arrived, stay.left, zone):
            days.places.setdefault(day, set()).add(stay.place)
            if stay.place == home:
                days.home_seconds[day] = (
                    days.home_seconds.get(day, 0.0) + (end - start).total_seconds()
                )
    return days
