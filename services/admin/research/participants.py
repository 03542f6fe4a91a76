"""Participants of a study: the admin enrols them (ids given, or generated) and issues
their enrolment codes (services.admin.research.enrolment trades a code for a token), withdraws
them (keeping or deleting their data, with a signed receipt); readers covering the
study list them."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from services.admin.access import ADMIN_ONLY, READERS_ONLY, caller
from services.admin.deps import Settings, StudyProtections
from services.admin.models import Participant
from services.admin.research.deletions import delete_data
from services.admin.research.enrolment import issue_code
from services.admin.research.schemas import (
    CodeState,
    IssuedCode,
    IssuedCodes,
    ParticipantsIn,
    ParticipantView,
    Withdrawal,
)
from services.admin.research.studies import STUDY_ERRORS, readable_study, stored_study
from services.common.research.auth import Role
from services.common.research.protections import study_pseudonyms
from services.common.research.studies import (
    open_study,
)
from services.common.research.tokens import revoke_token
from services.common.web.bodies import Record, json_body
from services.common.web.errors import Conflict, NotFound, field_error
from services.common.web.openapi import error_responses
from services.common.web.timestamps import stored_now


def _code_state(document: dict, now: datetime) -> CodeState:
    if document.get("code_used_at") is not None:
        return "used"
    if document.get("code_digest") is None:
        return "none"
    return "expired" if document["code_expires_at"] <= now else "pending"


def _participant_view(document: dict, now: datetime) -> ParticipantView:
    return ParticipantView(
        user_id=document["user_id"],
        status=document["status"],
        created_at=document["created_at"],
        code=_code_state(document, now),
        code_expires_at=document.get("code_expires_at"),
        enrolled_at=document.get("code_used_at"),
        withdrawn_at=document.get("withdrawn_at"),
        has_token=document.get("token_id") is not None and document["status"] == "active",
    )


async def withdraw_participant(found: dict, now: datetime) -> dict:
    """Stops a participant: their token and any pending code stop working, and they are
    marked withdrawn (a first withdrawal's time stays). The participant as stored after."""
    # The token is revoked before the status says so: a failure in between leaves
    # a participant who can still be withdrawn again, never a live token.
    await revoke_token(found.get("token_id"))
    updated = await Participant.get_pymongo_collection().find_one_and_update(
        {"_id": found["_id"]},
        {
            "$set": {"status": "withdrawn", "code_digest": None, "code_expires_at": None},
            "$min": {"withdrawn_at": now},
        },
        return_document=ReturnDocument.AFTER,
    )
    return updated or found


async def _generated_ids(study_id: str, count: int) -> list[str]:
    """The next `count` pseudonymous ids of the study: P001, P002, ... after the
    highest one in use (P1000 follows P999)."""
    taken = Participant.get_pymongo_collection().find(
        {"study_id": study_id, "user_id": {"$regex": r"^P[0-9]+$"}}, {"user_id": 1}
    )
    highest = max([int(doc["user_id"][1:]) async for doc in taken], default=0)
    return [f"P{number:03d}" for number in range(highest + 1, highest + 1 + count)]


class ParticipantController(Controller):
    """Participants of one study and their enrolment codes: the admin changes them;
    readers covering the study list them (the compliance report's enrolled participants)."""

    path = "/api/studies/{study_id:str}/participants"
    tags = ["studies"]
    # Guards are per handler (a controller's guards add to a handler's): every handler
    # names its own.

    @json_body
    @post(
        "/",
        guards=ADMIN_ONLY,
        operation_id="enrolParticipants",
        summary="Add participants (ids given, or generated) and issue their enrolment codes",
        # 403: the study is closed; 409: an id is in the study already.
        responses=error_responses(401, 403, 404, 409),
        status_code=201,
    )
    async def add(
        self,
        settings: Settings,
        request: Request,
        study_id: FromPath[str],
        wanted: Record[ParticipantsIn],
    ) -> IssuedCodes:
        if (wanted.user_ids is None) == (wanted.count is None):
            raise field_error("body", "give either user_ids or count, not both or neither")
        await open_study(study_id)
        user_ids = wanted.user_ids or await _generated_ids(study_id, wanted.count or 0)
        repeated = sorted(u for u, times in Counter(user_ids).items() if times > 1)
        if repeated:
            raise field_error("user_ids", f"lists {', '.join(repeated)} more than once")
        collection = Participant.get_pymongo_collection()
        present = [
            doc["user_id"]
            async for doc in collection.find(
                {"study_id": study_id, "user_id": {"$in": user_ids}}, {"user_id": 1}
            )
        ]
        if present:
            raise Conflict(
                f"Already in the study: {', '.join(sorted(present))}", extra={"user_ids": present}
            )
        now = stored_now()
        documents, shown = [], []
        for user_id in user_ids:
            document = {"study_id": study_id, "user_id": user_id, "status": "active"}
            changes, issued = issue_code(
                document, settings.secret_keys, settings.enrolment_code_seconds
            )
            documents.append({**document, "created_at": now, "token_id": None, **changes})
            shown.append(issued)
        try:
            await collection.insert_many(documents, ordered=True)
        except BulkWriteError:
            # Someone enrolled one of these ids meanwhile: take back what was added.
            await collection.delete_many(
                {"study_id": study_id, "user_id": {"$in": user_ids}, "created_at": now}
            )
            raise Conflict("Another request enrolled some of these ids meanwhile") from None
        return IssuedCodes(study_id=study_id, participants=shown)

    @get(
        "/",
        guards=READERS_ONLY,
        operation_id="listParticipants",
        summary="Participants of a study, with the state of their codes (never the codes); "
        "a study viewer's own studies only (another is 404)",
        responses=STUDY_ERRORS,
    )
    async def participants(
        self, protections: StudyProtections, request: Request, study_id: FromPath[str]
    ) -> list[ParticipantView]:
        await readable_study(request, study_id)
        study = await stored_study(study_id)
        now = stored_now()
        cursor = Participant.get_pymongo_collection().find({"study_id": study_id}).sort("user_id")
        views = [_participant_view(document, now) async for document in cursor]
        names = await study_pseudonyms(study, [v.user_id for v in views], protections)
        if names is None:
            return views
        if (await caller(request)).role == Role.ADMIN:  # both names
            return [msgspec.structs.replace(v, pseudonym=names[v.user_id]) for v in views]
        shown = [msgspec.structs.replace(v, user_id=names[v.user_id]) for v in views]
        return sorted(shown, key=lambda view: view.user_id)

    @post(
        "/{user_id:str}/code",
        guards=ADMIN_ONLY,
        operation_id="reissueEnrolmentCode",
        summary="A new enrolment code for a participant; their current token stops working",
        responses=error_responses(401, 403, 404),
        status_code=200,
    )
    async def reissue(
        self, settings: Settings, study_id: FromPath[str], user_id: FromPath[str]
    ) -> IssuedCode:
        await open_study(study_id)
        collection = Participant.get_pymongo_collection()
        found = await collection.find_one({"study_id": study_id, "user_id": user_id})
        if found is None or found["status"] != "active":
            raise NotFound(f"No active participant {user_id!r} in study {study_id!r}")
        changes, issued = issue_code(found, settings.secret_keys, settings.enrolment_code_seconds)
        await collection.update_one({"_id": found["_id"]}, {"$set": {**changes, "token_id": None}})
        await revoke_token(found.get("token_id"))
        return issued

    @json_body(optional=True)
    @post(
        "/{user_id:str}/withdraw",
        guards=ADMIN_ONLY,
        operation_id="withdrawParticipant",
        summary="Withdraw a participant: their token and any pending code stop working at once",
        description="Also in a closed study. Withdrawing again changes nothing. What they "
        'sent stays until it is deleted; with `{"delete_data": true}` it is deleted in every '
        "service in the same call, and the answer carries the signed deletion receipt "
        "(a deletion cut short completes when the call is made again).",
        responses=error_responses(401, 403, 404, 503),
        status_code=200,
    )
    async def withdraw(
        self,
        settings: Settings,
        request: Request,
        study_id: FromPath[str],
        user_id: FromPath[str],
        asked: Record[Withdrawal],
    ) -> ParticipantView:
        await stored_study(study_id)
        collection = Participant.get_pymongo_collection()
        found = await collection.find_one({"study_id": study_id, "user_id": user_id})
        if found is None:
            raise NotFound(f"No participant {user_id!r} in study {study_id!r}")
        now = stored_now()
        updated = await withdraw_participant(found, now)
        view = _participant_view(updated, now)
        if not asked.delete_data:
            return view
        withdrawn_at = updated.get("withdrawn_at") or now
        receipt = await delete_data(
            settings, study_id, user_id, await caller(request), withdrawn_at
        )
        return msgspec.structs.replace(view, deletion_receipt=receipt)
