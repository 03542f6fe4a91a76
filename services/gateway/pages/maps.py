"""A participant's GPS track for the map page: fixes grouped by local day (one colour
each), thinned evenly when there are very many, with what the offline SVG fallback and
the page's table of days need. The page draws it with Leaflet, served by the gateway
from the `xstatic-leaflet` package (never a CDN), on map tiles when a tile server is
configured and answers; otherwise it shows the SVG."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
from markupsafe import Markup

from services.common.research.localdays import local_day_and_hour, zone_named
from services.gateway.pages.charts import PALETTE, gps_track

# Points sent to the browser (a semester's fixes of one participant is ~17,000), and
# drawn in the SVG fallback.
MAX_MAP_POINTS = 20_000
MAX_SVG_POINTS = 2_000


class TrackDay(msgspec.Struct):
    day: str  # local day of the participant's study
    colour: str
    fixes: int
    first: str  # ISO 8601 UTC
    last: str
    points: list[tuple[float, float]]  # (latitude, longitude), thinned


class Track(msgspec.Struct):
    user_id: str
    time_zone: str
    fixes: int
    days: list[TrackDay]
    tiles: dict[str, str] | None  # url, attribution; None: off


def _parsed(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def read_track(
    records: AsyncIterator[dict[str, Any]], user_id: str, zone: str, tiles: dict[str, str] | None
) -> tuple[Track, list[dict[str, Any]]]:
    """The track of the fixes `records` gives (oldest first), by local day of `zone`;
    and the fixes the SVG fallback draws."""
    local = zone_named(zone)
    by_day: dict[str, list[dict[str, Any]]] = {}
    total = 0
    async for fix in records:
        day, _ = local_day_and_hour(_parsed(fix["timestamp"]), local)
        by_day.setdefault(day, []).append(
            {"latitude": fix["latitude"], "longitude": fix["longitude"], "at": fix["timestamp"]}
        )
        total += 1
    step = max(1, -(-total // MAX_MAP_POINTS))  # ceiling division
    days = []
    for index, (day, fixes) in enumerate(by_day.items()):
        kept = fixes[::step] if len(fixes) > step else fixes
        if kept[-1] is not fixes[-1]:
            kept = [*kept, fixes[-1]]  # every day ends where it ended
        days.append(
            TrackDay(
                day=day,
                colour=PALETTE[index % len(PALETTE)],
                fixes=len(fixes),
                first=fixes[0]["at"],
                last=fixes[-1]["at"],
                points=[(f["latitude"], f["longitude"]) for f in kept],
            )
        )
    svg_step = max(1, -(-total // MAX_SVG_POINTS))
    everything = [fix for fixes in by_day.values() for fix in fixes]
    drawn = everything[::svg_step]
    if everything and drawn[-1] is not everything[-1]:
        drawn.append(everything[-1])
    track = Track(user_id=user_id, time_zone=zone, fixes=total, days=days, tiles=tiles)
    return track, drawn


def fallback_svg(drawn: list[dict[str, Any]]) -> Markup | None:
    return gps_track(drawn, size=480)


def as_script_data(track: Track) -> Markup:
    """The track as JSON for a `<script type="application/json">`: `</` is escaped so
    no value can close the element."""
    text = msgspec.json.encode(track).decode().replace("</", "<\\/")
    return Markup(text)  # noqa: S704 - JSON inside a data script, `</` escaped
