"""The rollups' background work: one process at a time holds a lease and folds what
arrived every FOLD_SECONDS, recounting everything when a study's time zone moved; and
the rollup collections' indexes, made at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from services.common.research.studies import StudyZones
from services.common.runtime.periodic import Periodic
from services.common.web.timestamps import stored_now
from services.ingest.folding import _stated, fold, recount_all
from services.ingest.kinds import KINDS
from services.ingest.models import RollupState
from services.ingest.rollups import (
    PARTICIPANT,
    STATE_ID,
    VERSION,
    read_state,
    rollup_rows,
)

logger = logging.getLogger("emogo.ingest")


FOLD_SECONDS = 1.0


LEASE_SECONDS = 15.0


def moved_studies(state: dict[str, Any], zones: StudyZones) -> list[str]:
    """The studies whose rows were counted in another zone than theirs now (a study
    given a zone, or EMOGO_DISPLAY_TIMEZONE changed); new studies have no rows yet."""
    stated = state.get("zones") or {}
    now = _stated(zones)
    return sorted(study for study, name in stated.items() if now.get(study, name) != name)


async def ensure_rollups() -> None:
    """At start-up: when the rows and the tail do not add up to the records (rows
    lost, rows of an older version, or data from before rollups existed), readers go
    back to counting records until the folding worker has recounted everything."""
    state = await read_state()
    current = state is not None and state.get("version") == VERSION
    for attempt in range(3 if current else 0):
        rows = await rollup_rows({}, PARTICIPANT)
        if rows is not None:
            in_rollups = {kind.key: 0 for kind in KINDS}
            for row in rows:
                in_rollups[row["kind"]] += row["records"]
            counts = {kind.key: await kind.collection.estimated_document_count() for kind in KINDS}
            if counts == in_rollups:
                return
        if attempt < 2:  # writes landing between the two counts: look again
            await asyncio.sleep(0.5)
    await RollupState.get_pymongo_collection().update_one(
        {"_id": STATE_ID}, {"$set": {"folded_before": None}}, upsert=True
    )
    logger.info("rollups will be recounted from the records")


class RollupFolder:
    """Runs the folds in whichever worker holds the lease; the others stand by."""

    def __init__(self, settle_seconds: float, fallback_zone: str) -> None:
        self.settle = timedelta(seconds=settle_seconds)
        self.fallback_zone = fallback_zone
        self.holder = secrets.token_hex(8)
        self._periodic = Periodic("rollup fold", self.step, FOLD_SECONDS, logger)

    async def hold_lease(self) -> bool:
        now = stored_now()
        try:
            await RollupState.get_pymongo_collection().find_one_and_update(
                {
                    "_id": STATE_ID,
                    "$or": [{"holder": self.holder}, {"lease_until": {"$not": {"$gt": now}}}],
                },
                {
                    "$set": {
                        "holder": self.holder,
                        "lease_until": now + timedelta(seconds=LEASE_SECONDS),
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:  # another worker holds it
            return False
        return True

    async def step(self) -> None:
        if not await self.hold_lease():
            return
        upto = stored_now() - self.settle
        state = await read_state() or {}
        zones = await StudyZones.load(self.fallback_zone)
        moved = moved_studies(state, zones)
        mark = state.get("folded_before")
        if mark is None or moved:
            if moved:  # readers count from the records until the rows are recounted
                logger.info("studies moved to another time zone", extra={"studies": moved})
                await RollupState.get_pymongo_collection().update_one(
                    {"_id": STATE_ID}, {"$set": {"folded_before": None}}
                )
            counted = await recount_all(upto, zones, keep_lease=self.hold_lease)
            logger.info("rollups recounted", extra={"records": counted})
        elif upto > mark:
            await fold(mark, upto, zones, state.get("zones"))

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        # Let another worker take over at once.
        with contextlib.suppress(PyMongoError):
            await RollupState.get_pymongo_collection().update_one(
                {"_id": STATE_ID, "holder": self.holder}, {"$set": {"lease_until": None}}
            )
