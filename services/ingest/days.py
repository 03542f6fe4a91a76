"""Which days have records: what lets a list page jump over time without any
(services.common.web.windows), read in one or two small documents.

Folded days come with their counts from the rollups: the state document's day totals
for everyone, a participant's totals (spread over their first to last day) for one
participant. Days of records not folded yet are *registered* before the records are
stored: every worker notes each (kind, day), and each (kind, participant, day), the
first time it stores one, in a document per kind and per participant. A reader that
can see a record therefore sees its day too, without reading the unfolded records
(thousands of them while a phone syncs its history).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import UpdateOne

from services.common.web.windows import DaysWithData
from services.ingest.kinds import TelemetryKind
from services.ingest.models import DaysSeen, RollupTotal
from services.ingest.rollups import PARTICIPANT, read_state

ANYONE = "*"
UNCOUNTED_DAY = 1_000_000
# Keys this worker has registered; forgotten when it grows past this.
REMEMBERED_KEYS = 100_000


def _seen_id(kind: TelemetryKind, user_id: str) -> str:
    return f"{kind.key}|{user_id}"


class DayRegister:
    """Notes the days of records before they are stored, once per worker and key."""

    def __init__(self) -> None:
        self._noted: set[tuple[str, str]] = set()

    async def note(self, kind: TelemetryKind, documents: list[dict[str, Any]]) -> None:
        wanted: dict[str, set[str]] = {}
        for document in documents:
            day = document["timestamp"].strftime("%Y-%m-%d")
            for who in (document["user_id"], ANYONE):
                key = (_seen_id(kind, who), day)
                if key not in self._noted:
                    wanted.setdefault(key[0], set()).add(day)
        if not wanted:
            return
        await DaysSeen.get_pymongo_collection().bulk_write(
            [
                UpdateOne(
                    {"_id": seen_id},
                    {"$set": {f"days.{day}": True for day in sorted(days)}},
                    upsert=True,
                )
                for seen_id, days in wanted.items()
            ],
            ordered=False,
        )
        if len(self._noted) > REMEMBERED_KEYS:
            self._noted.clear()
        self._noted.update((seen_id, day) for seen_id, days in wanted.items() for day in days)


REGISTER = DayRegister()


async def forget_participant(user_id: str, kinds: list[TelemetryKind]) -> None:
    ids = [_seen_id(kind, user_id) for kind in kinds]
    await DaysSeen.get_pymongo_collection().delete_many({"_id": {"$in": ids}})
    REGISTER._noted = {key for key in REGISTER._noted if key[0] not in ids}


async def days_with_data(kind: TelemetryKind, user_id: str | None) -> DaysWithData | None:
    """The days that may have records of `kind` (of one participant, or of anyone),
    with about how many; None before the rollups exist."""
    state = await read_state()
    # A mark is set only together with the day totals (folding.recount_all).
    if state is None or state.get("folded_before") is None:
        return None
    if user_id is None:
        counts = dict(state["days"].get(kind.key, {}))
    else:
        counts = await _spread_over_days(kind, user_id)
    seen = await DaysSeen.get_pymongo_collection().find_one(
        {"_id": _seen_id(kind, user_id or ANYONE)}
    )
    for day in (seen or {}).get("days", {}):
        # Not counted yet: taken as busy, so a page starts with a narrow band there.
        counts.setdefault(day, UNCOUNTED_DAY)
    return DaysWithData(counts=counts)


async def _spread_over_days(kind: TelemetryKind, user_id: str) -> dict[str, int]:
    """A participant's folded records spread evenly over the days from their first to
    their last: one small read instead of a row per day, enough to plan a page and to
    skip the time before they started and after they stopped."""
    totals = RollupTotal.get_pymongo_collection().find(
        {"level": PARTICIPANT, "user_id": user_id, "kind": kind.key},
        {"records": 1, "first": 1, "last": 1},
    )
    rows = await totals.to_list()
    if not rows:
        return {}
    first = min(row["first"] for row in rows).date()
    last = max(row["last"] for row in rows).date()
    span = (last - first).days + 1
    each = max(1, round(sum(row["records"] for row in rows) / span))
    return {(first + timedelta(days=n)).isoformat(): each for n in range(span)}
