"""HTTP handlers of resumable uploads: tus 1.0.0 (the protocol and the uploads'
storage are in services.media.tus)."""

from typing import Any

from litestar import Controller, Request, Response, delete, head, patch, post
from litestar.params import FromPath

from services.common.research.auth import WRITERS, may_write, requires
from services.common.research.deps import CallerPrincipal
from services.common.web.errors import EXCEPTION_HANDLERS
from services.common.web.openapi import documented_bytes, error_responses
from services.media import tus
from services.media.deps import ResumableUploads
from services.media.models import TusUpload
from services.media.settings import UPLOAD_BODY_CEILING


def _finished(stored: tuple[dict[str, Any], bool] | None) -> dict[str, str]:
    """What the request that completes an upload also says: which vlog it became, and
    whether the same video was stored already."""
    if stored is None:
        return {}
    vlog, duplicate = stored
    return {"X-Vlog-Id": str(vlog["_id"]), "X-Vlog-Duplicate": "true" if duplicate else "false"}


def _tus_headers(**extra: str) -> dict[str, str]:
    # Without Cache-Control: no-store, which tus asks of every answer about an upload,
    # is every answer's already (services.common.web.app).
    return {"Tus-Resumable": tus.VERSION, **extra}


def _position(offset: int, upload: TusUpload, **extra: str) -> dict[str, str]:
    """Where an upload stands: its offset and when it expires."""
    return _tus_headers(
        **{
            "Upload-Offset": str(offset),
            "Upload-Expires": tus.expires_header(upload.expires_at),
            **extra,
        }
    )


def _speaking_tus(handler: Any) -> Any:
    """The shared error answer, with the `Tus-Resumable` header every tus response
    carries (refusals included)."""

    def answer(request: Request, exc: Exception) -> Response[Any]:
        response = handler(request, exc)
        response.headers["Tus-Resumable"] = tus.VERSION
        return response

    return answer


class ResumableUploadController(Controller):
    """tus 1.0.0 (services.media.tus): create, look up, continue and end an upload. Its
    OPTIONS answers carry the protocol's headers (`create_app`)."""

    path = tus.PATH
    tags = ["vlogs"]
    exception_handlers = {kind: _speaking_tus(h) for kind, h in EXCEPTION_HANDLERS.items()}

    @post(
        "/",
        operation_id="createResumableUpload",
        guards=[may_write()],
        summary="Create a resumable upload (tus creation): Upload-Length, Upload-Metadata, "
        "and optionally its first bytes",
        request_max_body_size=UPLOAD_BODY_CEILING,
        # creation-with-upload: the first bytes, optional.
        operation_class=documented_bytes(tus.PATCH_TYPE, required=False),
        responses=error_responses(409, 412, 413, 415, 460),
        status_code=201,
    )
    async def create(
        self, resumable: ResumableUploads, principal: CallerPrincipal, request: Request
    ) -> Response[None]:
        tus.require_version(request.headers)
        length = tus.header_number(request.headers, "Upload-Length")
        metadata = tus.parse_metadata(request.headers.get("upload-metadata"))
        # creation-with-upload: the first bytes may come with the request.
        with_bytes = bool(request.headers.get("content-type"))
        if with_bytes:
            tus.check_patch_type(request.headers.get("content-type"))
        checksum = tus.parse_checksum(request.headers.get("upload-checksum"))
        writer = principal
        upload = await resumable.create(writer, length, metadata)
        headers = _tus_headers(Location=f"{self.path}/{upload.id}")
        if with_bytes:
            _, stored = await resumable.append(upload, 0, request.stream(), writer, checksum)
            headers["Upload-Offset"] = str(upload.offset)
            headers.update(_finished(stored))
        headers["Upload-Expires"] = tus.expires_header(upload.expires_at)
        return Response(None, status_code=201, headers=headers)

    @head(
        "/{upload_id:str}",
        operation_id="resumableUploadOffset",
        guards=[requires(*WRITERS)],
        summary="How much of the upload is stored (Upload-Offset)",
        responses=error_responses(404, 410, 412),
    )
    async def offset(
        self,
        resumable: ResumableUploads,
        principal: CallerPrincipal,
        request: Request,
        upload_id: FromPath[str],
    ) -> Response[None]:
        tus.require_version(request.headers)
        upload = await resumable.find(upload_id, principal)
        headers = _position(upload.offset, upload, **{"Upload-Length": str(upload.length)})
        return Response(None, status_code=200, headers=headers)

    @patch(
        "/{upload_id:str}",
        operation_id="continueResumableUpload",
        guards=[may_write()],
        summary="Append bytes at Upload-Offset (application/offset+octet-stream)",
        request_max_body_size=UPLOAD_BODY_CEILING,
        operation_class=documented_bytes(tus.PATCH_TYPE),
        responses=error_responses(404, 409, 410, 412, 413, 415, 460),
        status_code=204,
    )
    async def append(
        self,
        resumable: ResumableUploads,
        principal: CallerPrincipal,
        request: Request,
        upload_id: FromPath[str],
    ) -> Response[None]:
        tus.require_version(request.headers)
        tus.check_patch_type(request.headers.get("content-type"))
        writer = principal
        upload = await resumable.find(upload_id, writer)
        offset = tus.header_number(request.headers, "Upload-Offset")
        checksum = tus.parse_checksum(request.headers.get("upload-checksum"))
        now_at, stored = await resumable.append(upload, offset, request.stream(), writer, checksum)
        headers = _position(now_at, upload, **_finished(stored))
        return Response(None, status_code=204, headers=headers)

    @delete(
        "/{upload_id:str}",
        operation_id="terminateResumableUpload",
        guards=[may_write()],
        summary="End an upload and remove its bytes (tus termination)",
        responses=error_responses(404, 410, 412),
        status_code=204,
    )
    async def terminate(
        self,
        resumable: ResumableUploads,
        principal: CallerPrincipal,
        request: Request,
        upload_id: FromPath[str],
    ) -> Response[None]:
        tus.require_version(request.headers)
        await resumable.terminate(await resumable.find(upload_id, principal))
        return Response(None, status_code=204, headers=_tus_headers())
