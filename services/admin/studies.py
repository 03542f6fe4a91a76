"""Studies and their participants: the admin creates, renames, moves to another time
zone and closes them, and viewers read those they may see (the export page's study
selector and time zone); enrol participants and issue their codes
(`enrolment` trades a code for a token). The environment's global tokens write to
the study `default`, which always exists and cannot be closed."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import FromPath, QueryParameter
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.admin import webhooks
from services.admin.access import ADMIN_ONLY, READERS_ONLY, caller, settings_of
from services.admin.deletions import delete_data
from services.admin.enrolment import issue_code
from services.admin.models import Participant
from services.admin.receipts import DeletionReceipt
from services.admin.study_schemas import (
    Expectations,
    IssuedCode,
    IssuedCodes,
    ParticipantsIn,
    ParticipantView,
    StudyIn,
    StudyUpdate,
    StudyView,
    Withdrawal,
)
from services.common.auth import Role
from services.common.errors import Conflict, NotFound, field_error
from services.common.grid import SMALLEST_GRID_M
from services.common.openapi import documented_body, error_responses
from services.common.protections import study_pseudonyms
from services.common.pseudonyms import new_pseudonym_key
from services.common.studies import (
    DEFAULT_SILENT_DAYS,
    DEFAULT_STUDY,
    Study,
    StudyStatus,
    is_time_zone,
    open_study,
)
from services.common.timestamps import stored_now
from services.common.tokens import revoke_token
from services.common.validation import read_record

STUDY_ERRORS = error_responses(401, 403, 404)
StatusFilter = Annotated[
    Literal["active", "closed"] | None, QueryParameter(description="Only studies in this state.")
]


def _view(document: dict, fallback_zone: str) -> StudyView:
    webhook = document.get("webhook_url") or ""
    parts = urlsplit(webhook)
    return StudyView(
        study_id=document["study_id"],
        name=document["name"],
        time_zone=document.get("time_zone"),
        days_time_zone=document.get("time_zone") or fallback_zone,
        status=document["status"],
        expectations=msgspec.convert(document.get("expectations") or {}, Expectations),
        silent_after_days=document.get("silent_after_days", DEFAULT_SILENT_DAYS),
        webhook=f"{parts.scheme}://{parts.hostname}/…" if webhook else None,
        pseudonyms=bool(document.get("pseudonyms")),
        gps_grid_m=document.get("gps_grid_m") or None,
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        closed_at=document.get("closed_at"),
    )


async def _checked_webhook(request: Request, url: str | None) -> None:
    """422 for a webhook to an address inside the server's network (services.admin.webhooks)."""
    if url:
        reason = await webhooks.refusal(url, settings_of(request).webhook_allow_private)
        if reason is not None:
            raise field_error("webhook_url", reason)


def _compliance_fields(wanted: StudyIn | StudyUpdate) -> dict[str, Any]:
    """The compliance settings a create or update gives, as stored."""
    fields: dict[str, Any] = {}
    if wanted.expectations is not None:
        fields["expectations"] = msgspec.to_builtins(wanted.expectations)
    if wanted.silent_after_days is not None:
        fields["silent_after_days"] = wanted.silent_after_days
    if wanted.webhook_url is not None:
        fields["webhook_url"] = wanted.webhook_url or None
    return fields


def _privacy_fields(wanted: StudyIn | StudyUpdate) -> dict[str, Any]:
    """The protections a create or update gives, as stored."""
    fields: dict[str, Any] = {}
    if wanted.pseudonyms is not None:
        fields["pseudonyms"] = wanted.pseudonyms
    if wanted.gps_grid_m is not None:
        if 0 < wanted.gps_grid_m < SMALLEST_GRID_M:
            raise field_error(
                "gps_grid_m", f"must be 0 (exact fixes) or at least {SMALLEST_GRID_M} metres"
            )
        fields["gps_grid_m"] = wanted.gps_grid_m or None
    return fields


def _checked_time_zone(name: str | None) -> None:
    if name is not None and not is_time_zone(name):
        raise field_error("time_zone", f"{name!r} is not an IANA time zone (Asia/Taipei, UTC)")


async def _stored(study_id: str) -> dict:
    document = await Study.get_pymongo_collection().find_one({"study_id": study_id})
    if document is None:
        raise NotFound(f"No study {study_id!r}")
    return document


async def _readable(request: Request, study_id: str) -> None:
    """A study viewer reads only its own studies: another is 404, as if absent."""
    scope = (await caller(request)).study_ids
    if scope is not None and study_id not in scope:
        raise NotFound(f"No study {study_id!r}")


async def _find(study_id: str, fallback_zone: str) -> StudyView:
    return _view(await _stored(study_id), fallback_zone)


async def _change(study_id: str, changes: dict, fallback_zone: str) -> StudyView:
    document = await Study.get_pymongo_collection().find_one_and_update(
        {"study_id": study_id},
        {"$set": {**changes, "updated_at": stored_now()}},
        return_document=ReturnDocument.AFTER,
    )
    if document is None:
        raise NotFound(f"No study {study_id!r}")
    return _view(document, fallback_zone)


class StudyController(Controller):
    path = "/api/studies"
    tags = ["studies"]

    @post(
        "/",
        guards=ADMIN_ONLY,
        operation_id="createStudy",
        summary="Create a study",
        operation_class=documented_body(StudyIn),
        # 409: a study with this id exists already.
        responses=error_responses(401, 403, 409),
        status_code=201,
    )
    async def create(self, request: Request) -> StudyView:
        study = await read_record(request, StudyIn)
        _checked_time_zone(study.time_zone)
        await _checked_webhook(request, study.webhook_url)
        now = stored_now()
        document = {
            "study_id": study.study_id,
            "name": study.name,
            "time_zone": study.time_zone,
            "status": StudyStatus.ACTIVE.value,
            **_compliance_fields(study),
            **_privacy_fields(study),
            # Made with the study, so its pseudonyms stay the same whenever they are on.
            "pseudonym_key": new_pseudonym_key(),
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
        }
        try:
            await Study.get_pymongo_collection().insert_one(document)
        except DuplicateKeyError:
            raise Conflict(f"A study {study.study_id!r} exists already") from None
        return _view(document, settings_of(request).display_timezone)

    @get(
        "/",
        guards=READERS_ONLY,
        operation_id="listStudies",
        summary="Every study the caller may see (a study viewer: its own)",
        responses=STUDY_ERRORS,
    )
    async def listing(self, request: Request, status: StatusFilter = None) -> list[StudyView]:
        query: dict = {"status": status} if status else {}
        scope = (await caller(request)).study_ids
        if scope is not None:
            query["study_id"] = {"$in": list(scope)}
        cursor = Study.get_pymongo_collection().find(query).sort("study_id", 1)
        zone = settings_of(request).display_timezone
        return [_view(document, zone) async for document in cursor]

    @get(
        "/{study_id:str}",
        guards=READERS_ONLY,
        operation_id="getStudy",
        summary="One study (another study is 404 to a study viewer, as if absent)",
        responses=STUDY_ERRORS,
    )
    async def one(self, request: Request, study_id: FromPath[str]) -> StudyView:
        await _readable(request, study_id)
        return await _find(study_id, settings_of(request).display_timezone)

    @patch(
        "/{study_id:str}",
        guards=ADMIN_ONLY,
        operation_id="updateStudy",
        summary="Rename a study, change its time zone or what it expects of participants",
        operation_class=documented_body(StudyUpdate),
        responses=STUDY_ERRORS,
    )
    async def update(self, request: Request, study_id: FromPath[str]) -> StudyView:
        update = await read_record(request, StudyUpdate)
        _checked_time_zone(update.time_zone)
        await _checked_webhook(request, update.webhook_url)
        changes = {
            field: value
            for field, value in (("name", update.name), ("time_zone", update.time_zone))
            if value is not None
        }
        changes.update(_compliance_fields(update))
        changes.update(_privacy_fields(update))
        if changes.get("pseudonyms"):
            # A study made before pseudonyms existed (or `default`) gets its key once.
            await Study.get_pymongo_collection().update_one(
                {"study_id": study_id, "pseudonym_key": None},
                {"$set": {"pseudonym_key": new_pseudonym_key()}},
            )
        return await _change(study_id, changes, settings_of(request).display_timezone)

    @post(
        "/{study_id:str}/close",
        guards=ADMIN_ONLY,
        operation_id="closeStudy",
        summary="Close a study: it takes no new data and can still be read and exported",
        # 409: the default study, which the global tokens write to, stays open.
        responses=error_responses(401, 403, 404, 409),
        status_code=200,
    )
    async def close(self, request: Request, study_id: FromPath[str]) -> StudyView:
        if study_id == DEFAULT_STUDY:
            raise Conflict("The default study stays open: the global device token writes to it")
        collection = Study.get_pymongo_collection()
        now = stored_now()
        # Closing again changes nothing: the first closing time stays.
        await collection.update_one(
            {"study_id": study_id, "status": StudyStatus.ACTIVE.value},
            {"$set": {"status": StudyStatus.CLOSED.value, "closed_at": now, "updated_at": now}},
        )
        return await _find(study_id, settings_of(request).display_timezone)

    @post(
        "/{study_id:str}/delete-data",
        guards=ADMIN_ONLY,
        operation_id="deleteStudyData",
        summary="Delete everything a closed study holds, in every service, with a signed receipt",
        description="The study and its participants' entries stay, as the record of what "
        "existed; their data goes: sentiments, GPS fixes, vlogs with their bytes, "
        "rollups. A deletion cut short completes when the call is made again.",
        # 409: the study is still open (close it first, so nothing new arrives).
        responses=error_responses(401, 403, 404, 409, 503),
        status_code=200,
    )
    async def delete_study_data(self, request: Request, study_id: FromPath[str]) -> DeletionReceipt:
        study = await _stored(study_id)
        if study["status"] != StudyStatus.CLOSED.value:
            raise Conflict(f"Close study {study_id!r} before deleting its data")
        return await delete_data(
            settings_of(request), study_id, None, await caller(request), study["closed_at"]
        )


def _code_state(document: dict, now: datetime) -> str:
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

    @post(
        "/",
        guards=ADMIN_ONLY,
        operation_id="enrolParticipants",
        summary="Add participants (ids given, or generated) and issue their enrolment codes",
        operation_class=documented_body(ParticipantsIn),
        # 403: the study is closed; 409: an id is in the study already.
        responses=error_responses(401, 403, 404, 409),
        status_code=201,
    )
    async def add(self, request: Request, study_id: FromPath[str]) -> IssuedCodes:
        wanted = await read_record(request, ParticipantsIn)
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
        settings = settings_of(request)
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
        self, request: Request, study_id: FromPath[str]
    ) -> list[ParticipantView]:
        await _readable(request, study_id)
        study = await _stored(study_id)
        now = stored_now()
        cursor = Participant.get_pymongo_collection().find({"study_id": study_id}).sort("user_id")
        views = [_participant_view(document, now) async for document in cursor]
        names = await study_pseudonyms(
            study, [v.user_id for v in views], request.app.state.protections
        )
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
        self, request: Request, study_id: FromPath[str], user_id: FromPath[str]
    ) -> IssuedCode:
        await open_study(study_id)
        collection = Participant.get_pymongo_collection()
        found = await collection.find_one({"study_id": study_id, "user_id": user_id})
        if found is None or found["status"] != "active":
            raise NotFound(f"No active participant {user_id!r} in study {study_id!r}")
        settings = settings_of(request)
        changes, issued = issue_code(found, settings.secret_keys, settings.enrolment_code_seconds)
        await collection.update_one({"_id": found["_id"]}, {"$set": {**changes, "token_id": None}})
        await revoke_token(found.get("token_id"))
        return issued

    @post(
        "/{user_id:str}/withdraw",
        guards=ADMIN_ONLY,
        operation_id="withdrawParticipant",
        summary="Withdraw a participant: their token and any pending code stop working at once",
        description="Also in a closed study. Withdrawing again changes nothing. What they "
        'sent stays until it is deleted; with `{"delete_data": true}` it is deleted in every '
        "service in the same call, and the answer carries the signed deletion receipt "
        "(a deletion cut short completes when the call is made again).",
        operation_class=documented_body(Withdrawal),
        responses=error_responses(401, 403, 404, 503),
        status_code=200,
    )
    async def withdraw(
        self, request: Request, study_id: FromPath[str], user_id: FromPath[str]
    ) -> ParticipantView:
        asked = await read_record(request, Withdrawal) if await request.body() else Withdrawal()
        await _stored(study_id)
        collection = Participant.get_pymongo_collection()
        found = await collection.find_one({"study_id": study_id, "user_id": user_id})
        if found is None:
            raise NotFound(f"No participant {user_id!r} in study {study_id!r}")
        # The token is revoked before the status says so: a failure in between leaves
        # a participant who can still be withdrawn again, never a live token.
        await revoke_token(found.get("token_id"))
        now = stored_now()
        updated = await collection.find_one_and_update(
            {"_id": found["_id"]},
            {
                "$set": {"status": "withdrawn", "code_digest": None, "code_expires_at": None},
                "$min": {"withdrawn_at": now},
            },
            return_document=ReturnDocument.AFTER,
        )
        view = _participant_view(updated or found, now)
        if not asked.delete_data:
            return view
        withdrawn_at = (updated or found).get("withdrawn_at") or now
        receipt = await delete_data(
            settings_of(request), study_id, user_id, await caller(request), withdrawn_at
        )
        return msgspec.structs.replace(view, deletion_receipt=receipt)
