"""The export page's cockpit: who stopped reporting, and a heatmap of what arrived from
each participant on each local day (services.gateway.exports.compliance has the numbers).

The heatmap is one HTML table (rows: participants, columns: local days), so screen
readers read it as a table and each cell's numbers are in its text and its tooltip.
Each cell carries a level (0-4) for each measure, sentiments, GPS hours and vlogs;
which one colours the table is a CSS choice (radio buttons, no script). Levels are
the share of the study's daily expectation met (a week's vlogs spread over its days),
or, where the study expects nothing of that kind, the share of the busiest cell. It
is built here rather than in the template: 12,000 cells (100 participants over 120
days) render in a few milliseconds.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup, escape

from services.gateway.exports.compliance import KINDS
from services.gateway.schemas import ComplianceReport, DayCell, ParticipantCompliance

# The newest days shown; older ones are in the compliance report.
MAX_DAYS = 180
LEVELS = 4
# Per measure: its letter in CSS classes and its cell field (_cell writes them out).
MEASURES = (("s", "sentiments"), ("g", "gps_hours"), ("v", "vlogs"))
EMPTY = DayCell()


def _level(value: float, full: float) -> int:
    if value <= 0:
        return 0
    if full <= 0:
        return LEVELS
    return max(1, min(LEVELS, math.ceil(LEVELS * value / full)))


def heatmap_days(
    compliance: ComplianceReport, since: date | None = None, until: date | None = None
) -> list[str]:
    """The local days the heatmap shows: from the earliest first record to the latest
    study's today (or the days from `since` to `until`, both included, when the page's
    filters name them), the newest MAX_DAYS of them."""
    if not compliance.participants:
        return []
    first = since or min(date.fromisoformat(p.first_day) for p in compliance.participants)
    last = until or max(
        [date.fromisoformat(s.today) for s in compliance.studies]
        + [date.fromisoformat(p.last_day) for p in compliance.participants if p.last_day]
    )
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _fullness(compliance: ComplianceReport) -> dict[tuple[str, str], float]:
    """What fills a cell, per study and measure: the daily expectation, else the
    busiest cell of that measure."""
    busiest = {
        field: max(
            (getattr(c, field) for p in compliance.participants for c in p.days.values()),
            default=0,
        )
        for _, field in MEASURES
    }
    full: dict[tuple[str, str], float] = {}
    for study in compliance.studies:
        for field, expectation, per_day in KINDS:
            wanted = study.expectations.get(expectation)
            full[(study.study_id, field)] = wanted * per_day if wanted else busiest[field]
    return full


def heatmap(compliance: ComplianceReport, days: list[str], several_studies: bool) -> Markup:
    """The heatmap table's rows and header, in the report's order (stopped first)."""
    full = _fullness(compliance)
    head = ['<tr><th scope="col">Participant</th>']
    for day in days:
        label = _label(day, days[0])
        head.append(f'<th scope="col" title="{day}"><span class="sr">{day}</span>{label}</th>')
    head.append("</tr>")
    body = []
    for person in compliance.participants:
        name = escape(person.user_id)
        shown = f"{name} ({escape(person.study_id)})" if several_studies else name
        flag = ' class="stopped"' if person.stopped else ""
        if person.status == "withdrawn":
            flag, shown = ' class="withdrawn"', f"{shown} (withdrawn)"
        cells = [f'<tr{flag} data-user-id="{name}"><th scope="row">{shown}</th>']
        fills = tuple(full.get((person.study_id, field), 0) for _, field in MEASURES)
        cells.extend(_cell(person, name, day, fills) for day in days)
        cells.append("</tr>")
        body.append("".join(cells))
    table = f"<thead>{''.join(head)}</thead><tbody>{''.join(body)}</tbody>"
    return Markup(table)  # noqa: S704 - ids escaped; the rest are days and numbers


def _label(day: str, first: str) -> str:
    """What a column shows: the month where one starts, the date on Mondays, else
    nothing (the full date is in the header's text for screen readers and its tooltip)."""
    when = date.fromisoformat(day)
    if when.day == 1 or day == first:
        return when.strftime("%b")
    return f"{when.day}" if when.weekday() == 0 else ""


def _cell(person: ParticipantCompliance, name: str, day: str, full: tuple[float, ...]) -> str:
    """One participant-day; `name` is the participant's id, escaped, and `full` what
    fills a cell of each measure in their study. Written out directly: the heatmap has
    thousands of cells."""
    if day < person.first_day:
        return '<td class="before"></td>'
    cell = person.days.get(day) or EMPTY
    s, g, v = cell.sentiments, cell.gps_hours, cell.vlogs
    said = f"{s} sentiments, {g} h with GPS, {v} vlogs"
    return (
        f'<td class="s{_level(s, full[0])} g{_level(g, full[1])} v{_level(v, full[2])}" '
        f'data-day="{day}" data-sentiments="{s}" data-gps-hours="{g}" data-vlogs="{v}" '
        f'title="{name}, {day}: {said}"><span class="sr">{said}</span></td>'
    )


def stopped(compliance: ComplianceReport) -> list[dict[str, Any]]:
    """Those who stopped reporting, longest silent first, with their last records."""
    return [
        {
            "user_id": p.user_id,
            "study_id": p.study_id,
            "silent_days": p.silent_days,
            "last_sentiment": p.last_sentiment,
            "last_gps_fix": p.last_gps_fix,
            "last_vlog": p.last_vlog,
        }
        for p in compliance.participants
        if p.stopped
    ]
