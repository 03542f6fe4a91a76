"""Deletions done again after a restore: at start the admin service compares the
deletion journal (services.admin.research.journal) with the database.

- A receipt in the database but not in the journal (a deletion made before the journal
  existed, or whose journal write failed) is written to the journal.
- A receipt in the journal that the database does not know is of a deletion made after
  the backup the database was restored from. Only a receipt this server signed counts.
  The participant is withdrawn again and their token revoked (the study closed again)
  at once, then the deletion runs again through the services, as the job of the same
  receipt id; it keeps the first receipt, and what the second run found beside it.

The services are asked through the gateway, which starts after the admin service: a
deletion that cannot be done yet is tried again, sooner at first, until it is done.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from pymongo.errors import PyMongoError

from services.admin.models import DeletionJob, Participant
from services.admin.research.deletions import new_job, run_deletion
from services.admin.research.journal import DeletionJournal
from services.admin.research.participants import withdraw_participant
from services.admin.research.receipts import check
from services.admin.research.studies import close_study
from services.admin.settings import AdminSettings
from services.common.runtime.periodic import BackgroundTask
from services.common.web.errors import ServiceUnavailable
from services.common.web.timestamps import parse_instant

logger = logging.getLogger("emogo.admin")

FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 60.0


async def reconcile(settings: AdminSettings) -> int:
    """Brings the journal and the database level; the number of deletions to do again."""
    journal = DeletionJournal(settings.deletion_journal)
    kept = journal.receipts()
    jobs = DeletionJob.get_pymongo_collection()
    known: set[str] = set()
    async for stored in jobs.find({}, {"receipt_id": 1, "state": 1, "receipt": 1}):
        known.add(stored["receipt_id"])
        if stored["state"] == "done" and stored["receipt_id"] not in kept:
            await journal.keep(stored["receipt"])
    redo = 0
    for receipt_id, receipt in kept.items():
        if receipt_id in known:
            continue
        if not check(receipt, settings.secret_keys).valid:
            logger.warning(
                "a receipt in the deletion journal is not one this server signed; skipped",
                extra={"receipt_id": receipt_id},
            )
            continue
        requested_at = parse_instant(receipt["requested_at"])
        await _stop_again(receipt, requested_at)
        job = new_job(
            receipt_id,
            receipt["study_id"],
            receipt["user_id"],
            receipt["requested_by"],
            requested_at,
        )
        job["reapplying"] = receipt
        await jobs.update_one({"receipt_id": receipt_id}, {"$setOnInsert": job}, upsert=True)
        logger.warning(
            "a deletion made after the database's backup is done again",
            extra={"receipt_id": receipt_id, "study_id": receipt["study_id"]},
        )
        redo += 1
    return redo


async def _stop_again(receipt: dict[str, Any], when: datetime) -> None:
    """What the deletion's request did first, before anything was deleted."""
    if receipt["user_id"] is None:
        await close_study(receipt["study_id"], when)
        return
    found = await Participant.get_pymongo_collection().find_one(
        {"study_id": receipt["study_id"], "user_id": receipt["user_id"]}
    )
    if found is not None:
        await withdraw_participant(found, when)


async def redo_pending(settings: AdminSettings) -> int:
    """Runs every deletion that is being done again; the number still not done."""
    jobs = DeletionJob.get_pymongo_collection()
    left = 0
    async for job in jobs.find({"state": "deleting", "reapplying": {"$exists": True}}):
        try:
            await run_deletion(settings, job)
        except ServiceUnavailable:
            left += 1
    return left


class DeletionReplay(BackgroundTask):
    """The start-up task: reconcile, then redo until nothing is left."""

    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings

    async def _run(self) -> None:
        wait = FIRST_RETRY_SECONDS
        reconciled = False
        while True:
            try:
                if not reconciled:
                    await reconcile(self.settings)
                    reconciled = True
                if not await redo_pending(self.settings):
                    return
            except PyMongoError as problem:
                logger.warning(
                    "deletions to do again: the database failed; trying again",
                    extra={"error": type(problem).__name__},
                )
            except Exception:
                logger.exception("deletions to do again failed; trying again")
            await asyncio.sleep(wait)
            wait = min(wait * 2, LONGEST_RETRY_SECONDS)
