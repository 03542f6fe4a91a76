"""The participant-day table: one row per participant and local day of their study with
their sentiments and movement (services.ingest.features), participant by participant,
each one's records read in time order. Memory holds one participant's days."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from services.common.research.localdays import local_day_and_hour, whole_days
from services.common.research.privacy import Disguise
from services.common.research.studies import DEFAULT_STUDY, StudyZones, record_study
from services.ingest import services
from services.ingest.features import Mood, Movement, StayFinder, place_days
from services.ingest.kinds import GPS_FIXES, SENTIMENTS
from services.ingest.summaries import participant_rows

STREAM_BATCH = 2000
SENTIMENT_FIELDS = {"_id": 0, "timestamp": 1, "emotion": 1, "intensity": 1}
FIX_FIELDS = {"_id": 0, "timestamp": 1, "latitude": 1, "longitude": 1}


async def participants_in(window: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The (study as records name it, participant) pairs with records in `window`, sorted."""
    rows = await participant_rows(window)
    pairs = {(row["study"] or None, row["user_id"]) for row in rows}
    return sorted(pairs, key=lambda pair: (pair[0] or "", pair[1]))


async def daily_rows(
    window: dict[str, Any],
    zones: StudyZones,
    max_ahead: timedelta,
    disguise: Disguise | None,
) -> AsyncIterator[dict[str, Any]]:
    """The rows of every participant in `window`, by study, participant and day. To a
    viewer of a study whose fixes are shown on a grid, whole local days only: the
    distances of narrow windows would place fixes inside a cell."""
    for study, user_id in await participants_in(window):
        theirs = {**window, "user_id": user_id, "study_id": record_study(study)}
        shown = user_id
        if disguise is not None:
            await disguise.learn([study])
            shown = disguise.user(study, user_id)
            await disguise.flush()
            if disguise.grid_of(study) and isinstance(theirs.get("timestamp"), dict):
                theirs["timestamp"] = whole_days(theirs["timestamp"], zones.zone(study))
        for row in await _participant_days(theirs, zones.zone(study), max_ahead):
            yield {"study_id": study or DEFAULT_STUDY, "user_id": shown, **row}


async def _participant_days(
    query: dict[str, Any], zone: ZoneInfo, max_ahead: timedelta
) -> list[dict[str, Any]]:
    moods: dict[date, Mood] = {}
    reader = await services.banded_reader(SENTIMENTS, query, max_ahead, SENTIMENT_FIELDS)
    async for sentiment in reader.walk(STREAM_BATCH):
        day = date.fromisoformat(local_day_and_hour(sentiment["timestamp"], zone)[0])
        moods.setdefault(day, Mood()).add(sentiment["emotion"], sentiment["intensity"])
    movements: dict[date, Movement] = {}
    stays = StayFinder()
    reader = await services.banded_reader(GPS_FIXES, query, max_ahead, FIX_FIELDS)
    async for fix in reader.walk(STREAM_BATCH):
        # The same local day and hour as the cockpit's (services.ingest.activity).
        local_day, hour = local_day_and_hour(fix["timestamp"], zone)
        day = date.fromisoformat(local_day)
        movements.setdefault(day, Movement()).add(fix["latitude"], fix["longitude"], hour)
        stays.add(fix["latitude"], fix["longitude"], _aware(fix["timestamp"]))
    places = place_days(stays.finish(), zone)
    rows = []
    for day in sorted(moods.keys() | movements.keys()):
        mood, movement = moods.get(day, Mood()), movements.get(day, Movement())
        rows.append(
            {
                "local_date": day.isoformat(),
                "sentiments": mood.count,
                "mean_intensity": round(mood.total / mood.count, 6) if mood.count else None,
                "emotions": {
                    emotion: {"count": int(n), "mean_intensity": round(total / n, 6)}
                    for emotion, (n, total) in sorted(mood.emotions.items())
                },
                "gps_fixes": movement.fixes,
                "gps_coverage_hours": len(movement.hours),
                "distance_km": round(movement.distance_m / 1000, 6),
                "radius_of_gyration_m": _rounded(movement.radius_of_gyration_m()),
                "distinct_places": len(places.places.get(day, ())),
                "time_at_home_hours": round(places.home_seconds.get(day, 0.0) / 3600, 6),
            }
        )
    return rows


def _aware(instant: datetime) -> datetime:
    """A stored time (naive UTC) as an aware one."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def ndjson_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The rows as NDJSON, in pieces of about STREAM_CHUNK_BYTES."""
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    async for row in rows:
        encoder.encode_into(row, buffer, -1)
        buffer += b"\n"
        if len(buffer) >= services.STREAM_CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
