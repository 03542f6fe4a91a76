"""Studies: the admin creates, renames, moves to another time zone and closes them, and
viewers read those they may see (the export page's study selector and time zone).
Their participants are in services.admin.research.participants. The environment's global
tokens write to the study `default`, which always exists and cannot be closed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import FromPath, QueryParameter
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.admin.access import ADMIN_ONLY, READERS_ONLY, caller
from services.admin.deps import Settings
from services.admin.research import webhooks
from services.admin.research.deletions import delete_data
from services.admin.research.receipts import DeletionReceipt
from services.admin.research.schemas import (
    Expectations,
    StudyIn,
    StudyUpdate,
    StudyView,
)
from services.common.research.grid import SMALLEST_GRID_M
from services.common.research.pseudonyms import new_pseudonym_key
from services.common.research.studies import (
    DEFAULT_SILENT_DAYS,
    DEFAULT_STUDY,
    Study,
    StudyStatus,
    is_time_zone,
)
from services.common.web.bodies import Record, json_body
from services.common.web.errors import Conflict, NotFound, field_error
from services.common.web.openapi import error_responses
from services.common.web.timestamps import stored_now

STUDY_ERRORS = error_responses(401, 403, 404)
StatusFilter = Annotated[
    Literal["active", "closed"] | None, QueryParameter(description="Only studies in this state.")
]


def _view(document: dict, fallback_zone: str) -> StudyView:
    return StudyView(
        study_id=document["study_id"],
        name=document["name"],
        time_zone=document.get("time_zone"),
        days_time_zone=document.get("time_zone") or fallback_zone,
        status=document["status"],
        expectations=msgspec.convert(document.get("expectations") or {}, Expectations),
        silent_after_days=document.get("silent_after_days", DEFAULT_SILENT_DAYS),
        webhook=webhooks.shown(document.get("webhook_url") or ""),
        pseudonyms=bool(document.get("pseudonyms")),
        gps_grid_m=document.get("gps_grid_m") or None,
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        closed_at=document.get("closed_at"),
    )


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


async def stored_study(study_id: str) -> dict:
    document = await Study.get_pymongo_collection().find_one({"study_id": study_id})
    if document is None:
        raise NotFound(f"No study {study_id!r}")
    return document


async def readable_study(request: Request, study_id: str) -> None:
    """A study viewer reads only its own studies: another is 404, as if absent."""
    scope = (await caller(request)).study_ids
    if scope is not None and study_id not in scope:
        raise NotFound(f"No study {study_id!r}")


async def close_study(study_id: str, now: datetime) -> None:
    """Closes a study: it takes no new data. Closing again changes nothing: the first
    closing time stays."""
    await Study.get_pymongo_collection().update_one(
        {"study_id": study_id, "status": StudyStatus.ACTIVE.value},
        {"$set": {"status": StudyStatus.CLOSED.value, "closed_at": now, "updated_at": now}},
    )


async def _find(study_id: str, fallback_zone: str) -> StudyView:
    return _view(await stored_study(study_id), fallback_zone)


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

    @json_body
    @post(
        "/",
        guards=ADMIN_ONLY,
        operation_id="createStudy",
        summary="Create a study",
        # 409: a study with this id exists already.
        responses=error_responses(401, 403, 409),
        status_code=201,
    )
    async def create(self, settings: Settings, study: Record[StudyIn]) -> StudyView:
        _checked_time_zone(study.time_zone)
        await webhooks.check(study.webhook_url, settings.webhook_allow_private)
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
        return _view(document, settings.display_timezone)

    @get(
        "/",
        guards=READERS_ONLY,
        operation_id="listStudies",
        summary="Every study the caller may see (a study viewer: its own)",
        responses=STUDY_ERRORS,
    )
    async def listing(
        self, settings: Settings, request: Request, status: StatusFilter = None
    ) -> list[StudyView]:
        query: dict = {"status": status} if status else {}
        scope = (await caller(request)).study_ids
        if scope is not None:
            query["study_id"] = {"$in": list(scope)}
        cursor = Study.get_pymongo_collection().find(query).sort("study_id", 1)
        zone = settings.display_timezone
        return [_view(document, zone) async for document in cursor]

    @get(
        "/{study_id:str}",
        guards=READERS_ONLY,
        operation_id="getStudy",
        summary="One study (another study is 404 to a study viewer, as if absent)",
        responses=STUDY_ERRORS,
    )
    async def one(self, settings: Settings, request: Request, study_id: FromPath[str]) -> StudyView:
        await readable_study(request, study_id)
        return await _find(study_id, settings.display_timezone)

    @json_body
    @patch(
        "/{study_id:str}",
        guards=ADMIN_ONLY,
        operation_id="updateStudy",
        summary="Rename a study, change its time zone or what it expects of participants",
        responses=STUDY_ERRORS,
    )
    async def update(
        self, settings: Settings, study_id: FromPath[str], update: Record[StudyUpdate]
    ) -> StudyView:
        _checked_time_zone(update.time_zone)
        await webhooks.check(update.webhook_url, settings.webhook_allow_private)
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
        return await _change(study_id, changes, settings.display_timezone)

    @post(
        "/{study_id:str}/close",
        guards=ADMIN_ONLY,
        operation_id="closeStudy",
        summary="Close a study: it takes no new data and can still be read and exported",
        # 409: the default study, which the global tokens write to, stays open.
        responses=error_responses(401, 403, 404, 409),
        status_code=200,
    )
    async def close(self, settings: Settings, study_id: FromPath[str]) -> StudyView:
        if study_id == DEFAULT_STUDY:
            raise Conflict("The default study stays open: the global device token writes to it")
        await close_study(study_id, stored_now())
        return await _find(study_id, settings.display_timezone)

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
    async def delete_study_data(
        self, settings: Settings, request: Request, study_id: FromPath[str]
    ) -> DeletionReceipt:
        study = await stored_study(study_id)
        if study["status"] != StudyStatus.CLOSED.value:
            raise Conflict(f"Close study {study_id!r} before deleting its data")
        return await delete_data(
            settings, study_id, None, await caller(request), study["closed_at"]
        )
