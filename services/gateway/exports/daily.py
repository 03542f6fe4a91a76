"""The participant-day table of the exports: the ingest service's days (sentiments and
movement) joined with the media service's (vlogs and their seconds), one row per
participant and local day with either, its emotions spread into one pair of columns
per emotion found in the export (codebook kind `daily`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.common.research.codebook import DAILY
from services.common.research.columns import column_word
from services.gateway.proxy.upstream import ServiceApi

NO_TELEMETRY: dict[str, Any] = {
    "sentiments": 0,
    "mean_intensity": None,
    "emotions": {},
    "gps_fixes": 0,
    "gps_coverage_hours": 0,
    "distance_km": 0.0,
    "radius_of_gyration_m": None,
    "distinct_places": 0,
    "time_at_home_hours": 0.0,
}


async def daily_table(
    api: ServiceApi, filters: dict[str, Any]
) -> tuple[list[str], AsyncIterator[dict[str, Any]]]:
    """The table's columns and its rows, by study, participant and day."""
    totals = await api.json("ingest", "/api/telemetry/summary", filters)
    words = sorted({column_word(emotion) for emotion in totals.get("emotions", {})})
    columns = DAILY.columns({"emotion": words})
    activity = await api.json("media", "/api/vlogs/activity", filters)
    vlog_days = {(row["study_id"], row["user_id"]): row["days"] for row in activity}
    return columns, _rows(api, filters, words, vlog_days)


async def _rows(
    api: ServiceApi,
    filters: dict[str, Any],
    words: list[str],
    vlog_days: dict[tuple[str, str], dict[str, dict[str, Any]]],
) -> AsyncIterator[dict[str, Any]]:
    person: tuple[str, str] | None = None
    days: list[dict[str, Any]] = []
    async for row in api.ndjson("ingest", "/api/telemetry/daily", filters):
        who = (row["study_id"], row["user_id"])
        if who != person:
            if person is not None:
                for flat in _with_vlogs(person, days, vlog_days.pop(person, {}), words):
                    yield flat
            person, days = who, []
        days.append(row)
    if person is not None:
        for flat in _with_vlogs(person, days, vlog_days.pop(person, {}), words):
            yield flat
    # Participants with vlogs and no telemetry in the window.
    for who in sorted(vlog_days):
        for flat in _with_vlogs(who, [], vlog_days[who], words):
            yield flat


def _with_vlogs(
    who: tuple[str, str],
    telemetry_days: list[dict[str, Any]],
    vlogs: dict[str, dict[str, Any]],
    words: list[str],
) -> list[dict[str, Any]]:
    """One participant's rows, telemetry and vlog days merged, by day."""
    by_day = {row["local_date"]: row for row in telemetry_days}
    rows = []
    for day in sorted(by_day.keys() | vlogs.keys()):
        row = by_day.get(day) or {"local_date": day, **NO_TELEMETRY}
        flat = {
            "study_id": who[0],
            "user_id": who[1],
            **{k: v for k, v in row.items() if k not in ("emotions", "study_id", "user_id")},
        }
        # Labels that read the same as a column word ("happy", "happy!") share its columns.
        sums: dict[str, tuple[int, float]] = {}
        for emotion, stats in row["emotions"].items():
            count, total = sums.get(column_word(emotion), (0, 0.0))
            n = stats["count"]
            sums[column_word(emotion)] = (count + n, total + n * stats["mean_intensity"])
        for word in words:
            count, total = sums.get(word, (0, 0.0))
            flat[f"emotion_{word}_count"] = count
            flat[f"emotion_{word}_mean_intensity"] = round(total / count, 6) if count else None
        flat["vlogs"] = vlogs.get(day, {}).get("vlogs", 0)
        flat["vlog_seconds"] = round(vlogs.get(day, {}).get("seconds", 0.0), 3)
        rows.append(flat)
    return rows
