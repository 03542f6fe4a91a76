"""Studies, for the admin only: create, list, read, rename, move to another time zone,
close. The environment's global tokens write to the study `default`, which always
exists and cannot be closed."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Request, get, patch, post
from litestar.params import FromPath, QueryParameter
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.admin.access import ADMIN_ONLY
from services.admin.schemas import StudyIn, StudyUpdate, StudyView
from services.common.errors import Conflict, NotFound, field_error
from services.common.openapi import documented_body, error_responses
from services.common.studies import DEFAULT_STUDY, Study, StudyStatus, is_time_zone
from services.common.timestamps import stored_now
from services.common.validation import read_record

STUDY_ERRORS = error_responses(401, 403, 404)
StatusFilter = Annotated[
    Literal["active", "closed"] | None, QueryParameter(description="Only studies in this state.")
]


def _view(document: dict) -> StudyView:
    return StudyView(
        study_id=document["study_id"],
        name=document["name"],
        time_zone=document["time_zone"],
        status=document["status"],
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        closed_at=document.get("closed_at"),
    )


def _checked_time_zone(name: str | None) -> None:
    if name is not None and not is_time_zone(name):
        raise field_error("time_zone", f"{name!r} is not an IANA time zone (Asia/Taipei, UTC)")


async def _find(study_id: str) -> StudyView:
    document = await Study.get_pymongo_collection().find_one({"study_id": study_id})
    if document is None:
        raise NotFound(f"No study {study_id!r}")
    return _view(document)


async def _change(study_id: str, changes: dict) -> StudyView:
    document = await Study.get_pymongo_collection().find_one_and_update(
        {"study_id": study_id},
        {"$set": {**changes, "updated_at": stored_now()}},
        return_document=ReturnDocument.AFTER,
    )
    if document is None:
        raise NotFound(f"No study {study_id!r}")
    return _view(document)


class StudyController(Controller):
    path = "/api/studies"
    tags = ["studies"]
    guards = ADMIN_ONLY

    @post(
        "/",
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
        now = stored_now()
        document = {
            "study_id": study.study_id,
            "name": study.name,
            "time_zone": study.time_zone,
            "status": StudyStatus.ACTIVE.value,
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
        }
        try:
            await Study.get_pymongo_collection().insert_one(document)
        except DuplicateKeyError:
            raise Conflict(f"A study {study.study_id!r} exists already") from None
        return _view(document)

    @get("/", operation_id="listStudies", summary="Every study", responses=STUDY_ERRORS)
    async def listing(self, status: StatusFilter = None) -> list[StudyView]:
        query = {"status": status} if status else {}
        cursor = Study.get_pymongo_collection().find(query).sort("study_id", 1)
        return [_view(document) async for document in cursor]

    @get("/{study_id:str}", operation_id="getStudy", summary="One study", responses=STUDY_ERRORS)
    async def one(self, study_id: FromPath[str]) -> StudyView:
        return await _find(study_id)

    @patch(
        "/{study_id:str}",
        operation_id="updateStudy",
        summary="Rename a study or change its time zone",
        operation_class=documented_body(StudyUpdate),
        responses=STUDY_ERRORS,
    )
    async def update(self, request: Request, study_id: FromPath[str]) -> StudyView:
        update = await read_record(request, StudyUpdate)
        _checked_time_zone(update.time_zone)
        changes = {
            field: value
            for field, value in (("name", update.name), ("time_zone", update.time_zone))
            if value is not None
        }
        return await _change(study_id, changes)

    @post(
        "/{study_id:str}/close",
        operation_id="closeStudy",
        summary="Close a study: it takes no new data and can still be read and exported",
        # 409: the default study, which the global tokens write to, stays open.
        responses=error_responses(401, 403, 404, 409),
        status_code=200,
    )
    async def close(self, study_id: FromPath[str]) -> StudyView:
        if study_id == DEFAULT_STUDY:
            raise Conflict("The default study stays open: the global device token writes to it")
        collection = Study.get_pymongo_collection()
        now = stored_now()
        # Closing again changes nothing: the first closing time stays.
        await collection.update_one(
            {"study_id": study_id, "status": StudyStatus.ACTIVE.value},
            {"$set": {"status": StudyStatus.CLOSED.value, "closed_at": now, "updated_at": now}},
        )
        return await _find(study_id)
