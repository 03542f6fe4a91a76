"""What the export page shows, worked out from the services' answers: the whole page's
context (`build_export_page`, which needs the services' API and nothing of HTTP),
participants merged from telemetry and vlogs, vlog totals, local times and sizes as
people read them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from services.common.research.filters import time_span
from services.common.web.pagination import decode_cursor
from services.common.web.schemas import utc_now
from services.gateway.exports.compliance import read_report
from services.gateway.pages.charts import emotion_distribution, intensity_over_time
from services.gateway.pages.cockpit import heatmap, heatmap_days, stopped
from services.gateway.proxy.upstream import ServiceApi, ServiceDown
from services.gateway.schemas import ComplianceReport

PARTICIPANTS_PER_PAGE = 25
VLOGS_PER_PAGE = 12


def merge_participants(
    telemetry: list[dict[str, Any]],
    vlogs: list[dict[str, Any]],
    after: str | None = None,
    through: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of one page of the participant table, by participant id.

    The page spans the ids after `after` through `through` (the telemetry page's last
    id; None when it is the last page): participants with vlogs but no telemetry in
    that span get a row too."""
    by_user = {row["user_id"]: row for row in vlogs}
    people = {row["user_id"]: row for row in telemetry}
    for user_id in by_user:
        if (after is None or user_id > after) and (through is None or user_id <= through):
            people.setdefault(user_id, {"user_id": user_id, "sentiments": 0, "gps_fixes": 0})
    rows = []
    for user_id in sorted(people):
        row, media = people[user_id], by_user.get(user_id, {})
        times_first = [t for t in (row.get("first_activity"), media.get("first_recorded")) if t]
        times_last = [t for t in (row.get("last_activity"), media.get("last_recorded")) if t]
        rows.append(
            {
                "user_id": user_id,
                "sentiments": row["sentiments"],
                "gps_fixes": row["gps_fixes"],
                "vlogs": media.get("vlogs", 0),
                "first_activity": min(times_first) if times_first else None,
                "last_activity": max(times_last) if times_last else None,
            }
        )
    return rows


def vlog_totals(activity: list[dict[str, Any]]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """From media's activity rows (per participant of each study): the vlogs' count and
    bytes, and per participant id their vlogs, first and last recording."""
    people: dict[str, dict[str, Any]] = {}
    for row in activity:
        person = people.setdefault(
            row["user_id"],
            {
                "user_id": row["user_id"],
                "vlogs": 0,
                "first_recorded": row["first_recorded"],
                "last_recorded": row["last_recorded"],
            },
        )
        person["vlogs"] += row["vlogs"]
        person["first_recorded"] = min(person["first_recorded"], row["first_recorded"])
        person["last_recorded"] = max(person["last_recorded"], row["last_recorded"])
    count = {
        "count": sum(row["vlogs"] for row in activity),
        "total_bytes": sum(row["total_bytes"] for row in activity),
    }
    return count, [people[user_id] for user_id in sorted(people)]


def local_time(value: str | datetime | None, zone: str) -> str:
    """An instant (ISO 8601, or a datetime; naive is UTC) as `YYYY-MM-DD HH:MM` in the
    page's time zone."""
    if not value:
        return ""
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def human_bytes(size: int | None) -> str:
    if not size:
        return "0 B"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


async def section(job: Any) -> tuple[Any, str | None]:
    """A part of the page: its data, or why its service could not give it."""
    try:
        return await job, None
    except ServiceDown as down:
        return (
            None,
            f"The {down.service} service is not answering ({down.reason}); this part is missing.",
        )


ONE_MS = timedelta(milliseconds=1)


def page_time_zone(studies: list[dict[str, Any]], chosen: str | None, fallback: str) -> str:
    """The page's times are in the chosen study's time zone, or in that of the only
    study the caller sees; otherwise (or until the study has one) in `fallback`."""
    if chosen is None and len(studies) == 1:
        chosen = studies[0]["study_id"]
    zone = next((s.get("time_zone") for s in studies if s["study_id"] == chosen), None)
    return zone or fallback


def _local_date(instant: datetime | None, zone: str) -> date | None:
    if instant is None:
        return None
    return instant.replace(tzinfo=instant.tzinfo or UTC).astimezone(ZoneInfo(zone)).date()


async def build_export_page(
    api: ServiceApi,
    filters: dict[str, Any],
    fallback_zone: str,
    vlogs_cursor: str | None = None,
    people_cursor: str | None = None,
) -> dict[str, Any]:
    """The export page's context for `filters`, read from the services at once; a part
    that fails is left empty and named in `problems`, the rest is still shown."""
    # The cockpit covers the chosen study and participant, whatever the time filters;
    # without time filters, one read of the vlogs serves the cockpit and the table.
    who = {k: filters[k] for k in ("study_id", "user_id") if filters[k]}
    vlog_activity = asyncio.ensure_future(api.json("media", "/api/vlogs/activity", filters))
    same_vlogs = vlog_activity if not (filters["since"] or filters["until"]) else None
    page_of_people = {**filters, "limit": PARTICIPANTS_PER_PAGE, "cursor": people_cursor}
    page_of_vlogs = {**filters, "limit": VLOGS_PER_PAGE, "cursor": vlogs_cursor}
    parts = await asyncio.gather(
        section(api.json("ingest", "/api/telemetry/participants", page_of_people)),
        section(api.json("admin", "/api/studies")),
        section(api.json("ingest", "/api/telemetry/summary", filters)),
        section(api.json("ingest", "/api/telemetry/timeline", filters)),
        section(vlog_activity),
        section(api.get("media", "/api/vlogs", page_of_vlogs)),
        section(read_report(api, who, utc_now(), fallback_zone, vlogs=same_vlogs)),
    )
    people, studies, summary, timeline, vlogs, vlog_page, cockpit = parts
    telemetry_page = people[0] or {"participants": [], "next_cursor": None}
    shown = telemetry_page["participants"]
    vlog_count, vlog_people = vlog_totals(vlogs[0] or [])
    rows = merge_participants(
        shown,
        vlog_people,
        after=decode_cursor(people_cursor, tuple[str])[0] if people_cursor else None,
        through=shown[-1]["user_id"] if shown and telemetry_page["next_cursor"] else None,
    )
    visible = studies[0] or []
    zone = page_time_zone(visible, filters["study_id"], fallback_zone)
    compliance = cockpit[0] or ComplianceReport(generated_at=utc_now(), studies=[], participants=[])
    span = time_span(filters["since"], filters["until"]).get("timestamp", {})
    days = heatmap_days(
        compliance,
        _local_date(span.get("$gte"), zone),
        _local_date(span["$lt"] - ONE_MS, zone) if "$lt" in span else None,
    )
    vlogs_response = vlog_page[0]
    return {
        "filters": filters,
        "query": urlencode({k: v for k, v in filters.items() if v}),
        "problems": list(dict.fromkeys(problem for _, problem in parts if problem)),
        "summary": summary[0],
        "vlog_count": vlog_count if vlogs[0] is not None else None,
        "emotion_chart": emotion_distribution(summary[0]["emotions"]) if summary[0] else None,
        "timeline_chart": intensity_over_time(timeline[0] or []),
        "rows": rows,
        "people_next": people[0]["next_cursor"] if people[0] else None,
        "vlogs": vlogs_response.json() if vlogs_response else [],
        "vlogs_next": vlogs_response.headers.get("x-next-cursor") if vlogs_response else None,
        "studies": visible,
        "zone": zone,
        "local": lambda value: local_time(value, zone),
        "size": human_bytes,
        "formats": ("csv", "parquet", "json", "ndjson"),
        "compliance": compliance,
        "stopped": stopped(compliance),
        "heatmap": heatmap(
            compliance, days, len({p.study_id for p in compliance.participants}) > 1
        ),
        "heatmap_days": days,
        "rates": {p.user_id: p.rate for p in reversed(compliance.participants)},
        "cockpit_query": urlencode(who),
    }
