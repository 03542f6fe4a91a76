"""Summaries of the telemetry: totals, a timeline per day and emotion, and a table
of participants, read from the daily rollups and their totals when the window
allows (services.ingest.rollups), else aggregated from the records."""

from __future__ import annotations

from typing import Any

from services.common.research.privacy import Disguise
from services.common.research.studies import StudyZones
from services.ingest.kinds import GPS_FIXES, KINDS, SENTIMENTS, TelemetryKind
from services.ingest.rollups import level_for, rollup_rows
from services.ingest.schemas import (
    EmotionStats,
    ParticipantTelemetry,
    TelemetryTotals,
    TimelinePoint,
)


async def participant_summaries(
    window: dict[str, Any], after: str | None, limit: int, disguise: Disguise | None = None
) -> tuple[list[ParticipantTelemetry], str | None]:
    """Per participant: counts, first and last activity, mean intensity per emotion.

    Sorted by participant id (as the caller is shown it); `after` is the last id of the
    previous page, and the returned cursor the last id of this one when more follow.
    Each collection gives at most `limit + 1` participants, which is enough to know
    the first `limit` of their union and whether there are more."""
    rows: list[dict[str, Any]] | None
    if disguise is not None:
        rows = await participant_rows(window)
    else:
        rows = await rollup_rows(window, level_for(window, per_day=False))
    if rows is not None:
        if disguise is not None:
            await disguise.learn({r["study"] or None for r in rows})
            rows = [{**r, "user_id": disguise.user(r["study"] or None, r["user_id"])} for r in rows]
            await disguise.flush()
        return _participants_from(rows, after, limit)
    match = window if after is None else {"$and": [window, {"user_id": {"$gt": after}}]}
    first_page: list[dict[str, Any]] = [{"$sort": {"_id": 1}}, {"$limit": limit + 1}]
    per_emotion = {
        "$group": {
            "_id": {"user_id": "$user_id", "emotion": "$emotion"},
            "count": {"$sum": 1},
            "mean": {"$avg": "$intensity"},
            "first": {"$min": "$timestamp"},
            "last": {"$max": "$timestamp"},
        }
    }
    per_participant = {
        "$group": {
            "_id": "$_id.user_id",
            "count": {"$sum": "$count"},
            "first": {"$min": "$first"},
            "last": {"$max": "$last"},
            "emotions": {"$push": {"emotion": "$_id.emotion", "count": "$count", "mean": "$mean"}},
        }
    }
    gps_per_participant = {
        "$group": {
            "_id": "$user_id",
            "count": {"$sum": 1},
            "first": {"$min": "$timestamp"},
            "last": {"$max": "$timestamp"},
        }
    }
    sentiment_rows = await _aggregate(
        SENTIMENTS, [{"$match": match}, per_emotion, per_participant, *first_page]
    )
    gps_rows = await _aggregate(GPS_FIXES, [{"$match": match}, gps_per_participant, *first_page])

    sentiments = {row["_id"]: row for row in sentiment_rows}
    gps_fixes = {row["_id"]: row for row in gps_rows}
    user_ids = sorted(sentiments.keys() | gps_fixes.keys())
    summaries = []
    for user_id in user_ids[:limit]:
        rows = [row for row in (sentiments.get(user_id), gps_fixes.get(user_id)) if row]
        emotions = sentiments[user_id]["emotions"] if user_id in sentiments else []
        summaries.append(
            ParticipantTelemetry(
                user_id=user_id,
                sentiments=sentiments[user_id]["count"] if user_id in sentiments else 0,
                gps_fixes=gps_fixes[user_id]["count"] if user_id in gps_fixes else 0,
                first_activity=min(row["first"] for row in rows),
                last_activity=max(row["last"] for row in rows),
                emotions={
                    e["emotion"]: EmotionStats(count=e["count"], mean_intensity=round(e["mean"], 6))
                    for e in sorted(emotions, key=lambda e: e["emotion"])
                },
            )
        )
    next_cursor = user_ids[limit - 1] if len(user_ids) > limit else None
    return summaries, next_cursor


async def participant_rows(window: dict[str, Any]) -> list[dict[str, Any]]:
    """Per kind, study, participant and emotion: the rollups' rows when they answer,
    else rows of the same shape summed from the records. For a viewer shown pseudonyms,
    whose pages follow pseudonyms' order, every participant is needed to cut one; the
    daily table goes through every participant."""
    rows = await rollup_rows(window, level_for(window, per_day=False))
    return rows if rows is not None else await _rows_from_records(window)


async def _rows_from_records(window: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for kind in KINDS:
        key = {"study": "$study_id", "user_id": "$user_id"}
        if kind is SENTIMENTS:
            key["emotion"] = "$emotion"
        sums: dict[str, Any] = {
            "records": {"$sum": 1},
            "first": {"$min": "$timestamp"},
            "last": {"$max": "$timestamp"},
        }
        if kind is SENTIMENTS:
            sums["intensity_sum"] = {"$sum": "$intensity"}
        for group in await _aggregate(kind, [{"$match": window}, {"$group": {"_id": key, **sums}}]):
            rows.append(
                {
                    **group,
                    "kind": kind.key,
                    "study": group["_id"].get("study") or "",
                    "user_id": group["_id"]["user_id"],
                    "emotion": group["_id"].get("emotion", ""),
                }
            )
    return rows


async def totals(window: dict[str, Any]) -> TelemetryTotals:
    """Counts over everything in `window`, and how often each emotion was reported."""
    rows = await rollup_rows(window, level_for(window, per_day=False))
    if rows is not None:
        return _totals_from(rows)
    emotion_rows = await _aggregate(
        SENTIMENTS,
        [
            {"$match": window},
            {"$group": {"_id": "$emotion", "count": {"$sum": 1}, "mean": {"$avg": "$intensity"}}},
            {"$sort": {"_id": 1}},
        ],
    )
    span = {"_id": None, "count": {"$sum": 1}, "first": {"$min": "$timestamp"}}
    span["last"] = {"$max": "$timestamp"}
    spans: dict[str, dict[str, Any]] = {}
    participants: set[str] = set()
    for kind in KINDS:
        rows = await _aggregate(kind, [{"$match": window}, {"$group": span}])
        spans[kind.noun] = rows[0] if rows else {"count": 0}
        participants.update(await kind.collection.distinct("user_id", window))
    known = [row for row in spans.values() if row["count"]]
    return TelemetryTotals(
        sentiments=spans[SENTIMENTS.noun]["count"],
        gps_fixes=spans[GPS_FIXES.noun]["count"],
        participants=len(participants),
        first_activity=min((row["first"] for row in known), default=None),
        last_activity=max((row["last"] for row in known), default=None),
        emotions={
            row["_id"]: EmotionStats(count=row["count"], mean_intensity=round(row["mean"], 6))
            for row in emotion_rows
        },
    )


async def timeline(window: dict[str, Any], fallback_zone: str) -> list[TimelinePoint]:
    """Mean intensity and count per local day (each study's) and emotion, oldest first:
    what a chart of intensity over time needs, however many sentiments there are."""
    rows = await rollup_rows(window, level_for(window, per_day=True), (SENTIMENTS,))
    if rows is not None:
        return _timeline_from(rows)
    zones = await StudyZones.load(fallback_zone)
    sums: dict[tuple[str, str], list[float]] = {}
    for zone, studies in zones.study_filters().items():
        local_day = {
            "$dateToString": {"format": "%Y-%m-%d", "date": "$timestamp", "timezone": zone}
        }
        groups = await _aggregate(
            SENTIMENTS,
            [
                {"$match": {"$and": [window, studies]}},
                {
                    "$group": {
                        "_id": {"day": local_day, "emotion": "$emotion"},
                        "count": {"$sum": 1},
                        "total": {"$sum": "$intensity"},
                    }
                },
            ],
        )
        for group in groups:
            entry = sums.setdefault((group["_id"]["day"], group["_id"]["emotion"]), [0, 0.0])
            entry[0] += group["count"]
            entry[1] += group["total"]
    return _points(sums)


async def _aggregate(kind: TelemetryKind, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cursor = await kind.collection.aggregate(pipeline)
    return await cursor.to_list()


def _emotions(rows: list[dict[str, Any]]) -> dict[str, EmotionStats]:
    counts: dict[str, list[float]] = {}
    for row in rows:
        if row["kind"] == SENTIMENTS.key:
            entry = counts.setdefault(row["emotion"], [0, 0.0])
            entry[0] += row["records"]
            entry[1] += row["intensity_sum"]
    return {
        emotion: EmotionStats(count=int(n), mean_intensity=round(total / n, 6))
        for emotion, (n, total) in sorted(counts.items())
    }


def _totals_from(rows: list[dict[str, Any]]) -> TelemetryTotals:
    return TelemetryTotals(
        sentiments=sum(r["records"] for r in rows if r["kind"] == SENTIMENTS.key),
        gps_fixes=sum(r["records"] for r in rows if r["kind"] == GPS_FIXES.key),
        participants=len({r["user_id"] for r in rows}),
        first_activity=min((r["first"] for r in rows), default=None),
        last_activity=max((r["last"] for r in rows), default=None),
        emotions=_emotions(rows),
    )


def _timeline_from(rows: list[dict[str, Any]]) -> list[TimelinePoint]:
    """Points from rows of single local days, or from timelines (their days in maps)."""
    points: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["kind"] != SENTIMENTS.key:
            continue
        if row.get("local_day"):
            days = {row["local_day"]: (row["records"], row["intensity_sum"])}
        else:
            days = {
                day: (records, row["day_intensity"][day]) for day, records in row["days"].items()
            }
        for day, (records, intensity) in days.items():
            entry = points.setdefault((day, row["emotion"]), [0, 0.0])
            entry[0] += records
            entry[1] += intensity
    return _points(points)


def _points(points: dict[tuple[str, str], list[float]]) -> list[TimelinePoint]:
    return [
        TimelinePoint(day=day, emotion=emotion, count=int(n), mean_intensity=round(total / n, 6))
        for (day, emotion), (n, total) in sorted(points.items())
    ]


def _participants_from(
    rows: list[dict[str, Any]], after: str | None, limit: int
) -> tuple[list[ParticipantTelemetry], str | None]:
    by_user: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if after is None or row["user_id"] > after:
            by_user.setdefault(row["user_id"], []).append(row)
    user_ids = sorted(by_user)
    summaries = []
    for user_id in user_ids[:limit]:
        mine = by_user[user_id]
        summaries.append(
            ParticipantTelemetry(
                user_id=user_id,
                sentiments=sum(r["records"] for r in mine if r["kind"] == SENTIMENTS.key),
                gps_fixes=sum(r["records"] for r in mine if r["kind"] == GPS_FIXES.key),
                first_activity=min(r["first"] for r in mine),
                last_activity=max(r["last"] for r in mine),
                emotions=_emotions(mine),
            )
        )
    return summaries, user_ids[limit - 1] if len(user_ids) > limit else None
