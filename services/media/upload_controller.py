"""HTTP handlers of the media service that receive videos: the seed's multipart form
and a raw body. (The seed's vlog by link, reading and managing vlogs:
services.media.controllers; resumable uploads: services.media.resumable.)"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import (
    Controller,
    Request,
    Response,
    post,
)
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from services.common.research.auth import (
    may_write,
)
from services.common.research.deps import CallerPrincipal
from services.common.web.clients import client_address
from services.common.web.openapi import (
    documented_bytes,
    documented_form,
    error_responses,
)
from services.media import services
from services.media.deps import UploadPaths
from services.media.schemas import (
    UploadFields,
    VlogCreated,
)
from services.media.settings import UPLOAD_BODY_CEILING


def created_answer(vlog: dict[str, Any], duplicate: bool, message: str) -> Response[VlogCreated]:
    wire = services.to_wire(vlog)
    return Response(
        VlogCreated(
            message="Vlog already uploaded" if duplicate else message,
            id=wire.id,
            video_url=wire.video_url,
            download_url=wire.download_url,
            file_size=wire.file_size,
            duplicate=duplicate,
            vlog=wire,
        ),
        status_code=HTTP_200_OK if duplicate else HTTP_201_CREATED,
    )


# The type is decided by the bytes; these are what clients usually label them.
RAW_UPLOAD_TYPES = (
    "application/octet-stream",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
)
# 408: the upload was slower than the minimum rate while others waited for its place;
# 429: more uploads at once than the service (or one writer) may have.
UPLOAD_ERRORS = error_responses(408, 429)
UPLOAD_DESCRIPTION = (
    "The seed's multipart form: `user_id` (required), `video` (the file), `title`, "
    "`description`, and optionally `timestamp` (when it was recorded). The type is "
    "decided by the file's bytes (MP4/MOV, WebM/MKV, AVI; else 415). 201 for a new vlog; "
    "the same participant sending the same bytes again gets the existing vlog with 200."
)


class UploadController(Controller):
    path = "/api/vlogs"
    tags = ["vlogs"]

    @post(
        "/upload",
        operation_id="uploadVlog",
        guards=[may_write()],
        summary="Upload a video (multipart)",
        description=UPLOAD_DESCRIPTION,
        request_max_body_size=UPLOAD_BODY_CEILING,
        operation_class=documented_form(UploadFields, "video", "The video file"),
        responses=UPLOAD_ERRORS,
    )
    async def upload(
        self, uploads: UploadPaths, principal: CallerPrincipal, request: Request
    ) -> Response[VlogCreated]:
        vlog, duplicate = await uploads.from_form(
            request.stream(),
            request.headers.get("content-type", ""),
            principal,
            client_address(request),
        )
        return created_answer(vlog, duplicate, "Vlog uploaded successfully")

    @post(
        "/upload/raw",
        operation_id="uploadVlogRaw",
        guards=[may_write()],
        summary="Upload a video as the request body, details in the query",
        request_max_body_size=UPLOAD_BODY_CEILING,
        operation_class=documented_bytes(*RAW_UPLOAD_TYPES),
        responses=UPLOAD_ERRORS,
    )
    async def upload_raw(
        self,
        uploads: UploadPaths,
        principal: CallerPrincipal,
        request: Request,
        user_id: Annotated[
            str | None,
            QueryParameter(description="Whose video; a participant token's own when absent."),
        ] = None,
        filename: Annotated[str, QueryParameter(max_length=255)] = "video",
        title: Annotated[str, QueryParameter(max_length=200)] = "",
        description: Annotated[str, QueryParameter(max_length=5000)] = "",
        timestamp: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Response[VlogCreated]:
        fields = {"title": title, "description": description}
        for name, value in (("user_id", user_id), ("timestamp", timestamp)):
            if value is not None:
                fields[name] = value
        vlog, duplicate = await uploads.from_body(
            request.stream(), filename, fields, principal, client_address(request)
        )
        return created_answer(vlog, duplicate, "Vlog uploaded successfully")
