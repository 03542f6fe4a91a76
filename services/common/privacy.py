"""What a study may hide from its viewers: participants' ids (shown as stable
pseudonyms) and precise places (GPS rounded to a grid).

Study settings are admin-service data (services.common.studies.Study); every
service that answers viewers applies them to what it sends, so a teaching assistant
never receives a real id or an exact fix, whichever route or export they use. The
admin, and a participant reading their own records, see everything.

A pseudonym is a keyed hash (HMAC-SHA256 with the study's own random key) of the
participant's id: stable for the life of the study, different in every study, and
not reversible without the key, which never leaves the database. So that a viewer
can filter by a pseudonym they were shown, each pseudonym a service hands out is
also written down (`pseudonyms` collection) and looked up when it comes back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pymongo
from beanie import Document
from litestar.connection import ASGIConnection
from pymongo import IndexModel, UpdateOne

from services.common.auth import principal_of
from services.common.codebook import KINDS, Treatment
from services.common.schemas import Principal
from services.common.studies import Study, record_study
from services.common.tokens import CACHE_SECONDS

PSEUDONYM_PREFIX = "anon-"
# 12 base32 characters: 60 bits, so two participants of a study do not share one.
PSEUDONYM_CHARACTERS = 12
# What each field is shown as, declared beside the codebook (services.common.codebook):
# text a phone wrote may name a participant ("alice_day3.mp4", "with bob"), and an
# opaque phone id may be built from one, so neither reaches a viewer as sent.
DISGUISED_FIELDS = frozenset(
    name
    for kind in KINDS.values()
    for name, how in kind.treatments.items()
    if how == Treatment.DISGUISED
)
DIGESTED_FIELDS = frozenset(
    name
    for kind in KINDS.values()
    for name, how in kind.treatments.items()
    if how == Treatment.DIGESTED
)
DROPPED_FIELDS = frozenset(
    name
    for kind in KINDS.values()
    for name, how in kind.treatments.items()
    if how == Treatment.DROPPED
)
DIGEST_PREFIX = "cid-"
# Where the admin service keeps who is enrolled in which study.
PARTICIPANTS_COLLECTION = "participants"
# Grid sizes a study may choose, in metres.
SMALLEST_GRID_M, LARGEST_GRID_M = 10, 100_000
METRES_PER_DEGREE = 111_320.0


def new_pseudonym_key() -> str:
    return secrets.token_hex(32)


def pseudonym(key: str, user_id: str) -> str:
    digest = hmac.new(bytes.fromhex(key), user_id.encode(), hashlib.sha256).digest()
    return PSEUDONYM_PREFIX + base64.b32encode(digest).decode()[:PSEUDONYM_CHARACTERS].lower()


def digest(key: str, field_name: str, value: str) -> str:
    """An opaque phone id as a viewer sees it: keyed by the study's key, so stable
    (a resent record keeps it) and not reversible, and different in every study."""
    message = field_name.encode() + b"\x00" + value.encode()
    mac = hmac.new(bytes.fromhex(key), message, hashlib.sha256).digest()
    return DIGEST_PREFIX + base64.b32encode(mac).decode()[:20].lower()


def grid_steps(grid_m: int, latitude: float) -> tuple[float, float]:
    """The grid's cell in degrees (latitude, longitude) at a latitude: square in metres,
    so a longitude step widens towards the poles (capped where cos(latitude) vanishes)."""
    lat_step = grid_m / METRES_PER_DEGREE
    return lat_step, min(360.0, lat_step / max(math.cos(math.radians(latitude)), 1e-6))


def coarsened(latitude: float, longitude: float, grid_m: int) -> tuple[float, float]:
    """A fix moved to the nearest point of a `grid_m` metre grid: latitude to a
    multiple of the latitude step, longitude to a multiple of the longitude step at
    the rounded latitude. Everything inside a cell reads as the same point."""
    lat_step, _ = grid_steps(grid_m, latitude)
    rounded_lat = max(-90.0, min(90.0, round(latitude / lat_step) * lat_step))
    _, lon_step = grid_steps(grid_m, rounded_lat)
    steps = round(longitude / lon_step)
    # Near the antimeridian the nearest grid point may lie past ±180: take the one inside.
    if steps * lon_step > 180.0:
        steps -= 1
    elif steps * lon_step < -180.0:
        steps += 1
    rounded_lon = steps * lon_step
    return round(rounded_lat, 7), round(rounded_lon, 7)


def described(pseudonyms: bool, gps_grid_m: int | None) -> list[str]:
    """A study's protections as short phrases (export manifests)."""
    phrases = ["participant ids replaced by pseudonyms"] if pseudonyms else []
    if gps_grid_m:
        phrases.append(f"GPS fixes rounded to a {gps_grid_m} m grid, without accuracy or altitude")
    return phrases


class PseudonymEntry(Document):
    """A pseudonym handed out to a viewer, so that it can be looked up when it comes back."""

    study_id: str
    pseudonym: str
    user_id: str

    class Settings:
        name = "pseudonyms"
        indexes = [
            IndexModel(
                [("pseudonym", pymongo.ASCENDING), ("study_id", pymongo.ASCENDING)],
                name="pseudonym_study_unique",
                unique=True,
            ),
            IndexModel(
                [("study_id", pymongo.ASCENDING), ("user_id", pymongo.ASCENDING)],
                name="study_user",
            ),
        ]


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

    async def disguise_for(self, principal: Principal) -> Disguise | None:
        """How to disguise what `principal` is sent; None when nothing need be (an
        admin, a participant, a device, or a viewer of studies without protections)."""
        if principal.role != "viewer":
            return None
        if principal.study_ids is None:  # every study's records, a new one's too
            snapshot = await self.current()
            return Disguise(self, snapshot.protected, known=set(snapshot.known))
        covered = {record_study(s) for s in principal.study_ids}
        snapshot = await self.current(unless_knows=covered)
        protected = {k: v for k, v in snapshot.protected.items() if k in covered}
        return Disguise(self, protected, covered) if protected else None

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


@dataclass
class Disguise:
    """What one viewer's request is sent: ids of protected studies replaced by their
    pseudonyms, fixes on the study's grid. Call `flush` before sending what `record`
    and `user` produced, so the pseudonyms in it can be filtered by."""

    protections: Protections
    protected: dict[str | None, StudyProtection]
    # The studies the credential covers (as records name them); None: every study.
    covered: set[str | None] | None = None
    # For a credential of every study: the studies whose protections are known.
    known: set[str | None] = field(default_factory=set)
    _handed_out: dict[tuple[str, str], str] = field(default_factory=dict)
    _unnoted: list[tuple[str, str, str]] = field(default_factory=list)

    async def learn(self, studies: Iterable[str | None]) -> None:
        """Makes sure the protections of `studies` (as records name them) are known:
        call before `record` or `user` with records of studies seen for the first time."""
        if self.covered is not None:
            return  # a scoped credential's studies were read when the disguise was made
        wanted = set(studies)
        if wanted <= self.known:
            return
        snapshot = await self.protections.current(
            unless_knows=wanted, patience=UNKNOWN_STUDY_SECONDS
        )
        self.protected = snapshot.protected
        # A study still unknown has no entry at all, so nothing to protect.
        self.known |= snapshot.known | wanted

    async def learn_from(self, documents: Iterable[dict[str, Any]]) -> None:
        await self.learn({document.get("study_id") for document in documents})

    def box_scope(self, window: dict[str, Any]) -> dict[str, Any] | None:
        """`window` without the studies whose viewers see fixes on a grid, for a box
        filter (boxes narrowed step by step would place a fix inside its cell); None
        when only such studies are left."""
        gridded = [named for named, p in self.protected.items() if p.gps_grid_m]
        if not gridded:
            return window
        scope = window.get("study_id")
        if isinstance(scope, dict) and "$nin" in scope:  # every study but some
            return {**window, "study_id": {"$nin": [*scope["$nin"], *gridded]}}
        reachable = _scope_studies(window)
        if reachable is None:
            return {**window, "study_id": {"$nin": gridded}}
        left = [study for study in reachable if study not in gridded]
        if not left:
            return None
        return {**window, "study_id": left[0] if len(left) == 1 else {"$in": left}}

    def grid_of(self, study: str | None) -> int | None:
        """The grid (metres) a study's fixes are shown on, if any (`study` as records
        name it)."""
        protection = self.protected.get(record_study(study))
        return protection.gps_grid_m if protection is not None else None

    def gridded_studies(self) -> list[str]:
        return sorted(v.study_id for v in self.protected.values() if v.gps_grid_m)

    def pseudonymous_studies(self) -> list[str | None]:
        """Protected studies as records name them (None for `default`)."""
        return [k for k, v in self.protected.items() if v.pseudonym_key]

    def user(self, study: str | None, user_id: str) -> str:
        """How `user_id` of `study` is shown."""
        protection = self.protected.get(record_study(study))
        if protection is None or not protection.pseudonym_key:
            return user_id
        known = self._handed_out.get((protection.study_id, user_id))
        if known is None:
            known = pseudonym(protection.pseudonym_key, user_id)
            self._handed_out[(protection.study_id, user_id)] = known
            self._unnoted.append((protection.study_id, known, user_id))
        return known

    def record(self, document: dict[str, Any]) -> dict[str, Any]:
        """A stored record (sentiment, GPS fix or vlog) as the viewer may see it."""
        protection = self.protected.get(document.get("study_id"))
        if protection is None:
            return document
        shown = dict(document)
        real = document.get("user_id")
        key = protection.pseudonym_key
        if key and isinstance(real, str):
            shown["user_id"] = self.user(protection.study_id, real)
            for name in DISGUISED_FIELDS:
                text = shown.get(name)
                if isinstance(text, str) and text:
                    shown[name] = self.disguised(protection, real, text)
            for name in DIGESTED_FIELDS:
                value = shown.get(name)
                if isinstance(value, str):
                    shown[name] = digest(key, name, value)
        if protection.gps_grid_m and "latitude" in shown and "longitude" in shown:
            shown["latitude"], shown["longitude"] = coarsened(
                shown["latitude"], shown["longitude"], protection.gps_grid_m
            )
            # Accuracy and altitude narrow a rounded fix back down: not shown.
            for precise in DROPPED_FIELDS:
                shown.pop(precise, None)
        return shown

    def disguised(self, protection: StudyProtection, real: str, text: str) -> str:
        """`text` with the record's own participant and every enrolled one of the study
        replaced by their pseudonyms."""
        if real in text:
            text = text.replace(real, self.user(protection.study_id, real))
        if protection.participants is None:
            return text
        return protection.participants.sub(
            lambda found: self.user(protection.study_id, found.group(0)), text
        )

    async def shown(self, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored records as the viewer may see them, their pseudonyms written down."""
        await self.learn_from(documents)
        records = [self.record(document) for document in documents]
        await self.flush()
        return records

    async def flush(self) -> None:
        """Writes down the pseudonyms handed out since the last flush."""
        if self._unnoted:
            entries, self._unnoted = self._unnoted, []
            await self.protections.note(entries)

    async def real_ids(self, shown: str) -> dict[str | None, str]:
        """Who a pseudonym the viewer sends stands for: {study as records name it: id}."""
        if not shown.startswith(PSEUDONYM_PREFIX):
            return {}
        pseudonymous = {v.study_id: k for k, v in self.protected.items() if v.pseudonym_key}
        found = PseudonymEntry.get_pymongo_collection().find(
            {"pseudonym": shown, "study_id": {"$in": list(pseudonymous)}},
            {"study_id": 1, "user_id": 1},
        )
        return {pseudonymous[e["study_id"]]: e["user_id"] async for e in found}

    async def participant_filter(self, shown: str, scope: dict[str, Any]) -> dict[str, Any]:
        """The records of the participant a viewer names, within `scope` (the
        credential's study filter): by pseudonym in a pseudonymous study, by id in any
        other. A real id never reaches records of a pseudonymous study, so guessing ids
        reveals nothing."""
        hidden = self.pseudonymous_studies()
        if not hidden:
            return {"user_id": shown}
        reachable = _scope_studies(scope)
        real = await self.real_ids(shown)
        if len(real) == 1:
            ((study, user_id),) = real.items()
            if reachable is None or study in reachable:
                return {"user_id": user_id, "study_id": study}
            return NOTHING
        if real:  # the same pseudonym in two studies: each study's participant
            return {
                "$or": [
                    {"user_id": user_id, "study_id": study}
                    for study, user_id in real.items()
                    if reachable is None or study in reachable
                ]
                or [NOTHING]
            }
        if reachable is None:
            return {"user_id": shown, "study_id": {"$nin": hidden}}
        visible = [s for s in reachable if s not in hidden]
        if len(visible) == 1:
            return {"user_id": shown, "study_id": visible[0]}
        return {"user_id": shown, "study_id": {"$in": visible}}


DISGUISE_SCOPE_KEY = "emogo_disguise"
Row = TypeVar("Row", bound=msgspec.Struct)


async def disguise_of(connection: ASGIConnection) -> Disguise | None:
    """How to disguise what the request's (proven) principal is sent; worked out once
    per request."""
    if DISGUISE_SCOPE_KEY in connection.scope:
        return connection.scope[DISGUISE_SCOPE_KEY]  # type: ignore[literal-required]
    protections: Protections | None = connection.app.state.get("protections")
    disguise = None
    if protections is not None:
        disguise = await protections.disguise_for(principal_of(connection))
    connection.scope[DISGUISE_SCOPE_KEY] = disguise  # type: ignore[literal-required]
    return disguise


async def disguised_rows(connection: ASGIConnection, rows: list[Row]) -> list[Row]:
    """Rows naming a participant (`user_id`) of a study (`study_id`) as the request's
    principal is shown them."""
    disguise = await disguise_of(connection)
    if disguise is None:
        return rows
    await disguise.learn({record_study(row.study_id) for row in rows})  # type: ignore[attr-defined]
    shown = [
        msgspec.structs.replace(row, user_id=disguise.user(row.study_id, row.user_id))  # type: ignore[attr-defined]
        for row in rows
    ]
    await disguise.flush()
    return shown


# Matches no record (and no rollup row: services.ingest.rollups reads `$in` lists).
NOTHING: dict[str, Any] = {"study_id": {"$in": []}}


def _scope_studies(scope: dict[str, Any]) -> list[str | None] | None:
    """The studies (as records name them) a credential's filter reaches; None: any."""
    if "study_id" not in scope:
        return None
    studies = scope["study_id"]
    if isinstance(studies, dict):
        return list(studies.get("$in", []))
    return [studies]
