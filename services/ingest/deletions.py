"""Deleting telemetry: a participant's records (of every study, or of one) or a whole
study's, and everything counted from them: their rollup rows, and the totals of their
days and studies recounted without them."""

from __future__ import annotations

from typing import Any

from services.common.research.studies import record_study, row_study
from services.ingest.days import forget_participant
from services.ingest.folding import recount_totals
from services.ingest.kinds import GPS_FIXES, KINDS, SENTIMENTS
from services.ingest.models import DailyRollup, RollupTotal
from services.ingest.rollups import CALENDAR, DAY, PARTICIPANT, TIMELINE, folded_before
from services.ingest.schemas import DeletedTelemetry


async def delete_participant(user_id: str, study_id: str | None = None) -> DeletedTelemetry:
    """Deletes a participant's records, of every study or of `study_id` only (the same
    id in another study is another person), and their rollups."""
    theirs: dict[str, Any] = {"user_id": user_id}
    if study_id is not None:
        theirs["study_id"] = record_study(study_id)
    await delete_rollups_of(user_id, study_id)
    sentiments = await SENTIMENTS.collection.delete_many(theirs)
    gps_fixes = await GPS_FIXES.collection.delete_many(theirs)
    # Again: a fold that read the records before they went may have written a row.
    await delete_rollups_of(user_id, study_id)
    await forget_participant(user_id, [SENTIMENTS, GPS_FIXES])
    return DeletedTelemetry(
        user_id=user_id, sentiments=sentiments.deleted_count, gps_fixes=gps_fixes.deleted_count
    )


async def delete_study(study_id: str) -> DeletedTelemetry:
    """Deletes every record of a study (not `default`, which cannot be closed) and its
    rollups."""
    participants = await delete_rollups_of_study(study_id)
    sentiments = await SENTIMENTS.collection.delete_many({"study_id": study_id})
    gps_fixes = await GPS_FIXES.collection.delete_many({"study_id": study_id})
    participants |= await delete_rollups_of_study(study_id)
    for user_id in participants:
        await forget_participant(user_id, [SENTIMENTS, GPS_FIXES])
    return DeletedTelemetry(
        user_id=None, sentiments=sentiments.deleted_count, gps_fixes=gps_fixes.deleted_count
    )


async def delete_rollups_of(user_id: str, study_id: str | None = None) -> None:
    """After a participant's records are deleted (of every study, or of `study_id`):
    their rows go, and the totals of their days and studies are recounted without
    them."""
    theirs: dict[str, Any] = {"user_id": user_id}
    if study_id is not None:
        theirs["study"] = row_study(study_id)
    daily = DailyRollup.get_pymongo_collection()
    rows: dict[str, list[dict[str, Any]]] = {
        kind.key: await daily.find({"kind": kind.key, **theirs}, {"day": 1, "study": 1}).to_list()
        for kind in KINDS
    }
    await daily.delete_many(theirs)
    await RollupTotal.get_pymongo_collection().delete_many(
        {"level": {"$in": [PARTICIPANT, CALENDAR]}, **theirs}
    )
    upto = await folded_before()
    if upto is not None:
        for kind in KINDS:
            await recount_totals(kind, DAY, {row["day"] for row in rows[kind.key]}, upto)
            await recount_totals(kind, TIMELINE, {row["study"] for row in rows[kind.key]}, upto)


async def delete_rollups_of_study(study_id: str) -> set[str]:
    """After a study's records are deleted: its rows and totals go, and the day totals
    of its days are recounted without it. Returns the participants it had rows of."""
    study = row_study(study_id)
    daily = DailyRollup.get_pymongo_collection()
    days: dict[str, set[str]] = {kind.key: set() for kind in KINDS}
    participants: set[str] = set()
    async for row in daily.find({"study": study}, {"kind": 1, "day": 1, "user_id": 1}):
        days.setdefault(row["kind"], set()).add(row["day"])
        participants.add(row["user_id"])
    await daily.delete_many({"study": study})
    await RollupTotal.get_pymongo_collection().delete_many({"study": study})
    upto = await folded_before()
    if upto is not None:
        for kind in KINDS:
            await recount_totals(kind, DAY, days[kind.key], upto)
    return participants
