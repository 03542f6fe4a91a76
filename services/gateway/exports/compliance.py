"""Who is reporting: per participant, what arrived on each local day of their study,
how that compares with what the study expects, and who stopped reporting, from the
services' activity APIs and the studies' settings (a pure computation: the same
numbers for the page, `GET /api/telemetry/compliance` and the daily notice).

Rates cover whole local days only, from a participant's first record to yesterday:
today is not over. A rate is what was delivered over what was expected, at most 1
(GPS in hours with at least one fix; vlogs expected per week, so a day expects a
seventh).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import msgspec

from services.common.research.localdays import local_today, zone_named
from services.common.research.studies import DEFAULT_SILENT_DAYS, DEFAULT_STUDY
from services.gateway.exports.formats import spreadsheet_safe
from services.gateway.proxy.upstream import ServiceApi
from services.gateway.schemas import (
    ComplianceReport,
    DayCell,
    KindCompliance,
    ParticipantCompliance,
    StudyCompliance,
)

# Each kind: the day cell's field, and the expectation per day it is held against.
KINDS = (
    ("sentiments", "sentiments_per_day", 1.0),
    ("gps_hours", "gps_hours_per_day", 1.0),
    ("vlogs", "vlogs_per_week", 1 / 7),
)
CSV_COLUMNS = (
    "study_id", "user_id", "status", "time_zone", "enrolled_on", "first_day", "last_day",
    "last_sentiment",
    "last_gps_fix", "last_vlog", "silent_days", "stopped", "days_counted",
    "sentiments", "sentiments_expected", "sentiments_rate",
    "gps_hours", "gps_hours_expected", "gps_hours_rate",
    "vlogs", "vlogs_expected", "vlogs_rate", "rate",
)  # fmt: skip


def _instant(value: Any) -> datetime | None:
    return msgspec.convert(value, datetime) if value else None


def report(
    studies: list[dict[str, Any]],
    telemetry: list[dict[str, Any]],
    vlogs: list[dict[str, Any]],
    enrolled: dict[str, list[dict[str, Any]]],
    now: datetime,
    fallback_zone: str,
) -> ComplianceReport:
    """`studies` as the admin API lists them, `enrolled` each study's participants as it
    lists them; `telemetry` and `vlogs` as ingest's and media's activity APIs give
    them. An enrolled participant who never sent anything is in the report too: silent
    since they enrolled."""
    settings = {study["study_id"]: study for study in studies}
    people: dict[tuple[str, str], dict[str, Any]] = {}

    def person(study_id: str, user_id: str) -> dict[str, Any]:
        return people.setdefault(
            (study_id, user_id), {"days": {}, "last": {}, "status": "active", "since": None}
        )

    for study_id, participants in enrolled.items():
        for participant in participants:
            found = person(study_id, participant["user_id"])
            found["status"] = participant["status"]
            found["since"] = _instant(participant.get("enrolled_at") or participant["created_at"])
    for row in telemetry:
        found = person(row["study_id"], row["user_id"])
        for day, counts in row["days"].items():
            cell = found["days"].setdefault(day, DayCell())
            cell.sentiments += counts.get("sentiments", 0)
            cell.gps_hours += counts.get("gps_hours", 0)
        found["last"]["sentiment"] = _instant(row.get("last_sentiment"))
        found["last"]["gps_fix"] = _instant(row.get("last_gps_fix"))
    for row in vlogs:
        found = person(row["study_id"], row["user_id"])
        for day, counts in row["days"].items():
            found["days"].setdefault(day, DayCell()).vlogs += counts["vlogs"]
        found["last"]["vlog"] = _instant(row.get("last_recorded"))

    rows = [
        _participant(study_id, user_id, found, settings.get(study_id, {}), now, fallback_zone)
        for (study_id, user_id), found in people.items()
    ]
    rows.sort(
        key=lambda r: (not r.stopped, -r.silent_days if r.stopped else 0, r.study_id, r.user_id)
    )
    summaries = []
    for study_id in sorted({r.study_id for r in rows} | set(settings)):
        study = settings.get(study_id, {})
        zone = study.get("days_time_zone") or fallback_zone
        summaries.append(
            StudyCompliance(
                study_id=study_id,
                time_zone=zone,
                today=local_today(now, zone_named(zone)),
                expectations=study.get("expectations") or {},
                silent_after_days=study.get("silent_after_days", DEFAULT_SILENT_DAYS),
                stopped=[r.user_id for r in rows if r.study_id == study_id and r.stopped],
            )
        )
    return ComplianceReport(generated_at=now, studies=summaries, participants=rows)


def _participant(
    study_id: str,
    user_id: str,
    found: dict[str, Any],
    study: dict[str, Any],
    now: datetime,
    fallback_zone: str,
) -> ParticipantCompliance:
    zone = study.get("days_time_zone") or fallback_zone
    local = zone_named(zone)
    today = date.fromisoformat(local_today(now, local))
    days = dict(sorted(found["days"].items()))
    enrolled_on = local_today(found["since"], local) if found["since"] else None
    starts = [day for day in (enrolled_on, next(iter(days), None)) if day]
    first_day = min(starts)
    last_day = next(reversed(days)) if days else None
    if last_day is None:  # nothing yet: silent since the day they enrolled
        silent = max(0, (today - date.fromisoformat(first_day)).days)
    else:
        silent = max(0, (today - date.fromisoformat(last_day)).days - 1)
    counted_days = max(0, (today - date.fromisoformat(first_day)).days)
    before_today = [cell for day, cell in days.items() if day < today.isoformat()]
    expectations = study.get("expectations") or {}
    kinds = {}
    for field, expectation, per_day in KINDS:
        delivered = float(sum(getattr(cell, field) for cell in before_today))
        wanted = expectations.get(expectation)
        expected = None if wanted is None else round(wanted * per_day * counted_days, 3)
        rate = None if not expected else round(min(1.0, delivered / expected), 4)
        kinds[field] = KindCompliance(delivered=delivered, expected=expected, rate=rate)
    rates = [k.rate for k in kinds.values() if k.rate is not None]
    active = found["status"] == "active"
    return ParticipantCompliance(
        study_id=study_id,
        user_id=user_id,
        status=found["status"],
        time_zone=zone,
        enrolled_on=enrolled_on,
        first_day=first_day,
        last_day=last_day,
        last_sentiment=found["last"].get("sentiment"),
        last_gps_fix=found["last"].get("gps_fix"),
        last_vlog=found["last"].get("vlog"),
        silent_days=silent,
        # A withdrawn participant is not expected to report.
        stopped=active and silent >= study.get("silent_after_days", DEFAULT_SILENT_DAYS),
        days_counted=counted_days,
        rate=round(sum(rates) / len(rates), 4) if rates else None,
        days=days,
        **kinds,
    )


def as_csv(compliance: ComplianceReport) -> bytes:
    """One row per participant (CSV_COLUMNS), in the report's order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in compliance.participants:
        plain = msgspec.to_builtins(row)
        values = [plain[name] for name in CSV_COLUMNS[:13]]
        for field, _, _ in KINDS:
            kind = plain[field]
            values += [kind["delivered"], kind["expected"], kind["rate"]]
        values.append(plain["rate"])
        writer.writerow(["" if v is None else spreadsheet_safe(v) for v in values])
    return buffer.getvalue().encode()


async def read_report(
    api: ServiceApi,
    filters: dict[str, Any],
    now: datetime,
    fallback_zone: str,
    vlogs: Awaitable[Any] | None = None,
) -> ComplianceReport:
    """The report for `filters` (study and participant), read with the caller's own
    credential from admin (studies), ingest and media (activity) at once; `vlogs`: the
    same media activity already being read for the same filters."""
    wanted = {k: v for k, v in filters.items() if k in ("study_id", "user_id") and v}
    studies: list[dict[str, Any]]
    telemetry: list[dict[str, Any]]
    activity: list[dict[str, Any]]
    studies, telemetry, activity = await asyncio.gather(
        api.json("admin", "/api/studies"),
        api.json("ingest", "/api/telemetry/activity", wanted),
        vlogs or api.json("media", "/api/vlogs/activity", wanted),
    )
    if wanted.get("study_id"):
        studies = [study for study in studies if study["study_id"] == wanted["study_id"]]
    # `default` enrols nobody: its data comes with the global tokens.
    enrolling = [study["study_id"] for study in studies if study["study_id"] != DEFAULT_STUDY]
    lists = await asyncio.gather(
        *(api.json("admin", f"/api/studies/{quote(s)}/participants") for s in enrolling)
    )
    enrolled = {
        study_id: [p for p in participants if p["user_id"] == wanted.get("user_id", p["user_id"])]
        for study_id, participants in zip(enrolling, lists, strict=True)
    }
    return report(studies, telemetry, activity, enrolled, now, fallback_zone)
