"""The studies' protections as every service reads them: which studies show viewers
pseudonyms or a GPS grid, and who is enrolled in them, kept for a few seconds per
process; and the pseudonyms handed out, written down so they can be filtered by.

Study settings and enrolments are admin-service data (services.common.research.studies.Study,
the `participants` collection), read here by every service that answers viewers;
services.common.research.privacy applies them to what is sent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne

from services.common.research.pseudonyms import PseudonymEntry, pseudonym
from services.common.research.studies import Study, record_study
from services.common.research.tokens import CACHE_SECONDS

# Where the admin service keeps who is enrolled in which study.
PARTICIPANTS_COLLECTION = "participants"


def described(pseudonyms: bool, gps_grid_m: int | None) -> list[str]:
    """A study's protections as short phrases (export manifests)."""
    phrases = ["participant ids replaced by pseudonyms"] if pseudonyms else []
    if gps_grid_m:
        phrases.append(f"GPS fixes rounded to a {gps_grid_m} m grid, without accuracy or altitude")
    return phrases


@dataclass(frozen=True)
class StudyProtection:
    """One study's protections for viewers."""

    study_id: str
    pseudonym_key: str | None
    gps_grid_m: int | None
    # The study's enrolled participants, longest id first: any of them named in text a
    # phone wrote is replaced by their pseudonym (None: the study shows real ids).
    participants: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Snapshot:
    """The studies as one read found them, keyed as records name their study."""

    protected: dict[str | None, StudyProtection]
    known: frozenset[str | None]


async def _read_studies() -> Snapshot:
    found = Study.get_pymongo_collection().find(
        {}, {"study_id": 1, "pseudonyms": 1, "pseudonym_key": 1, "gps_grid_m": 1}
    )
    protected: dict[str | None, StudyProtection] = {}
    known = set()
    studies = [study async for study in found]
    enrolled = await _participants_of(
        [s["study_id"] for s in studies if s.get("pseudonyms") and s.get("pseudonym_key")]
    )
    for study in studies:
        named = record_study(study["study_id"])
        known.add(named)
        key = study.get("pseudonym_key") if study.get("pseudonyms") else None
        if key or study.get("gps_grid_m"):
            ids = sorted(enrolled.get(study["study_id"], ()), key=len, reverse=True)
            protected[named] = StudyProtection(
                study_id=study["study_id"],
                pseudonym_key=key,
                gps_grid_m=study.get("gps_grid_m"),
                participants=re.compile("|".join(map(re.escape, ids))) if key and ids else None,
            )
    return Snapshot(protected, frozenset(known))


async def _participants_of(study_ids: list[str]) -> dict[str, set[str]]:
    """The participants enrolled in `study_ids` (the admin service's `participants`
    collection, read like the studies themselves)."""
    if not study_ids:
        return {}
    collection = Study.get_pymongo_collection().database[PARTICIPANTS_COLLECTION]
    found: dict[str, set[str]] = {}
    rows = collection.find(
        {"study_id": {"$in": study_ids}}, {"_id": 0, "study_id": 1, "user_id": 1}
    )
    async for row in rows:
        found.setdefault(row["study_id"], set()).add(row["user_id"])
    return found


# How often a record of a study not seen yet may send this process to read the studies
# (a record of a study with no entry at all, left from an older version, would send
# every read there). A credential's own studies are read at once.
UNKNOWN_STUDY_SECONDS = 1.0


class Protections:
    """The studies' protections, read at most once per CACHE_SECONDS per process (the
    same bound as revoking a token): a change to a study's settings reaches viewers
    within that bound. A study this process has not seen yet is read at once, so a
    study created with protections has them from its first record."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0
        self._reading: asyncio.Lock | None = None
        # Pseudonyms this process wrote down already.
        self._noted: set[tuple[str, str]] = set()

    async def current(
        self, *, unless_knows: Iterable[str | None] = (), patience: float = 0.0
    ) -> Snapshot:
        """The studies, read again when older than the bound, or when one of
        `unless_knows` (as records name studies) is missing and the last read is older
        than `patience` seconds."""
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:  # one read at a time, however many requests wait
            snapshot = self._snapshot
            age = time.monotonic() - self._read_at
            if (
                snapshot is None
                or age >= self.cache_seconds
                or (age > patience and not snapshot.known.issuperset(unless_knows))
            ):
                read_at = time.monotonic()
                self._snapshot = snapshot = await _read_studies()
                self._read_at = read_at
            return snapshot

    async def note(self, entries: list[tuple[str, str, str]]) -> None:
        """Writes down pseudonyms (study, pseudonym, user) not noted before."""
        new = [e for e in entries if (e[0], e[1]) not in self._noted]
        if not new:
            return
        await PseudonymEntry.get_pymongo_collection().bulk_write(
            [
                UpdateOne(
                    {"pseudonym": name, "study_id": study},
                    {"$setOnInsert": {"user_id": user}},
                    upsert=True,
                )
                for study, name, user in new
            ],
            ordered=False,
        )
        if len(self._noted) > 100_000:
            self._noted.clear()
        self._noted.update((study, name) for study, name, _ in new)


async def study_pseudonyms(
    study: dict[str, Any], user_ids: Iterable[str], protections: Protections
) -> dict[str, str] | None:
    """A study's pseudonyms of `user_ids`, made from the study's own document (not the
    protections kept for a few seconds) and written down so they can be filtered by;
    None when the study shows real ids."""
    key = study.get("pseudonym_key")
    if not study.get("pseudonyms") or not key:
        return None
    names = {user_id: pseudonym(key, user_id) for user_id in user_ids}
    await protections.note([(study["study_id"], name, user) for user, name in names.items()])
    return names
