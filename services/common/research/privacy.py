"""What a viewer of a protected study is sent: each record's fields as the codebook
declares (services.common.research.codebook, `treatments`), participants as pseudonyms
(services.common.research.pseudonyms), fixes on the study's grid (services.common.research.grid).

Every service that answers viewers applies it to what it sends, with the studies'
protections it has read (services.common.research.protections), so a teaching assistant never
receives a real id or an exact fix, whichever route or export they use. The admin,
and a participant reading their own records, see everything. So that a viewer can
filter by a pseudonym they were shown, each one handed out is written down and looked
up when it comes back.

Owned by no service: applied by every service that sends records to viewers; the
protections it applies are the admin service's data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from litestar.connection import ASGIConnection

from services.common.research.auth import principal_of
from services.common.research.codebook import KINDS
from services.common.research.columns import Treatment
from services.common.research.grid import coarsened
from services.common.research.protections import UNKNOWN_STUDY_SECONDS, Protections, StudyProtection
from services.common.research.pseudonyms import PSEUDONYM_PREFIX, PseudonymEntry, digest, pseudonym
from services.common.research.studies import record_study
from services.common.web.schemas import Principal

# What each field is shown as, declared beside the codebook (services.common.research.codebook):
# text a phone wrote may name a participant ("alice_day3.mp4", "with bob"), and an
# opaque phone id may be built from one, so neither reaches a viewer as sent.


def _fields_treated(how: Treatment) -> frozenset[str]:
    return frozenset(
        name for kind in KINDS.values() for name, rule in kind.treatments.items() if rule == how
    )


DISGUISED_FIELDS = _fields_treated(Treatment.DISGUISED)
DIGESTED_FIELDS = _fields_treated(Treatment.DIGESTED)
DROPPED_FIELDS = _fields_treated(Treatment.DROPPED)


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


async def disguise_for(protections: Protections, principal: Principal) -> Disguise | None:
    """How to disguise what `principal` is sent; None when nothing need be (an
    admin, a participant, a device, or a viewer of studies without protections)."""
    if principal.role != "viewer":
        return None
    if principal.study_ids is None:  # every study's records, a new one's too
        snapshot = await protections.current()
        return Disguise(protections, snapshot.protected, known=set(snapshot.known))
    covered = {record_study(s) for s in principal.study_ids}
    snapshot = await protections.current(unless_knows=covered)
    protected = {k: v for k, v in snapshot.protected.items() if k in covered}
    return Disguise(protections, protected, covered) if protected else None


DISGUISE_SCOPE_KEY = "emogo_disguise"
Row = TypeVar("Row", bound=msgspec.Struct)


async def disguise_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Disguise | None:
    """How to disguise what the request's (proven) principal is sent; worked out once
    per request."""
    if DISGUISE_SCOPE_KEY in connection.scope:
        known: Disguise | None = connection.scope[DISGUISE_SCOPE_KEY]  # type: ignore[literal-required]  # our own key in Litestar's scope
        return known
    protections: Protections | None = connection.app.state.get("protections")
    disguise = None
    if protections is not None:
        disguise = await disguise_for(protections, principal_of(connection))
    connection.scope[DISGUISE_SCOPE_KEY] = disguise  # type: ignore[literal-required]  # our own key in Litestar's scope
    return disguise


async def disguised_rows(
    connection: ASGIConnection[Any, Any, Any, Any], rows: list[Row]
) -> list[Row]:
    """Rows naming a participant (`user_id`) of a study (`study_id`) as the request's
    principal is shown them."""
    disguise = await disguise_of(connection)
    if disguise is None:
        return rows
    await disguise.learn({record_study(row.study_id) for row in rows})  # type: ignore[attr-defined]  # records of every kind carry study_id and user_id
    shown = [
        msgspec.structs.replace(row, user_id=disguise.user(row.study_id, row.user_id))  # type: ignore[attr-defined]  # records of every kind carry study_id and user_id
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
