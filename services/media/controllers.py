"""HTTP handlers of the media service: uploads, playback and downloads, management."""

from datetime import timedelta
from typing import Annotated, Any

from litestar import (
    Controller,
    Request,
    Response,
    delete,
    get,
    patch,
    post,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from services.common.research.auth import (
    OWN_READERS,
    READERS,
    Role,
    credential_id,
    edit_scope,
    may_write,
    own_scope,
    principal_of,
    requires,
    study_of,
    written_as,
)
from services.common.research.deps import CallerDisguise, CallerPrincipal
from services.common.research.filters import (
    TIME_AND_PARTICIPANT,
    MongoFilter,
    ParticipantPath,
    StudyFilter,
    StudyPath,
)
from services.common.research.privacy import disguise_of, disguised_rows
from services.common.research.studies import StudyZones
from services.common.web.bodies import Record, json_body
from services.common.web.errors import NotFound
from services.common.web.openapi import (
    ALSO_SERVED_AS,
    BINARY,
    ErrorEnvelope,
    VlogIdPath,
    documented_body,
)
from services.common.web.pagination import (
    DEFAULT_PAGE_SIZE,
    CursorParameter,
    Order,
    OrderParameter,
    PageSize,
    next_page_headers,
)
from services.common.web.validation import convert_record, decode_json, require_json
from services.media import activity, services
from services.media.delivery import STORED_BYTES_CACHING, content_disposition, send_stored
from services.media.deps import ResumableUploads, Settings, Storage
from services.media.models import PreviewState, VlogState
from services.media.schemas import (
    CleanupReport,
    DeletedVlogs,
    ParticipantVlogDays,
    ParticipantVlogs,
    VlogCount,
    VlogCreated,
    VlogEdit,
    VlogLinkIn,
    VlogOut,
)
from services.media.upload_controller import created_answer


def _scope(request: Request) -> dict[str, Any]:
    return own_scope(principal_of(request))


async def _shown(request: Request, vlog: dict[str, Any]) -> dict[str, Any]:
    """A stored vlog as the caller is shown it (a viewer of a protected study: disguised,
    down to the name its download is saved under)."""
    disguise = await disguise_of(request)
    return vlog if disguise is None else (await disguise.shown([vlog]))[0]


async def _stored_vlog(request: Request, vlog_id: str) -> dict[str, Any]:
    vlog = await services.get_vlog(services.parse_vlog_id(vlog_id), scope=_scope(request))
    if not vlog.get("has_file") or vlog.get("state") != VlogState.READY:
        raise NotFound(f"Video file not found: vlog {vlog_id} has no stored video")
    return await _shown(request, vlog)


def _original(request: Request, vlog: dict[str, Any], kind: str) -> Response[Any]:
    name = services.download_name(vlog, services.extension_of(vlog))
    return send_stored(
        request,
        storage_id=vlog["storage_id"],
        size=vlog["size"],
        etag=f'"{vlog["sha256"]}"',
        content_type=vlog["content_type"],
        disposition=content_disposition(kind, name),
    )


# What the byte routes send: the video in its own media type (a byte range of it with
# 206, RFC 9110 §14) or the JPEG thumbnail; never JSON but for errors.
VIDEO_ANSWER = {"video/*": BINARY, "application/octet-stream": BINARY}
THUMBNAIL_ANSWER = {"image/jpeg": BINARY}
RANGE_RESPONSES = {
    206: ResponseSpec(
        generate_examples=False,
        data_container=bytes,
        description="The byte range asked for (Range)",
    ),
    416: ResponseSpec(
        generate_examples=False,
        data_container=ErrorEnvelope,
        description="The range is not satisfiable",
    ),
}
StateFilter = Annotated[
    VlogState,
    QueryParameter(
        name="state", description="Only vlogs in this state (the default `ready`: finished ones)."
    ),
]


class VlogController(Controller):
    path = "/api/vlogs"
    tags = ["vlogs"]
    dependencies = TIME_AND_PARTICIPANT

    @post(
        "/",
        operation_id="createVlogLink",
        guards=[may_write()],
        summary="Record a vlog whose video lives elsewhere (the seed's `video_url`)",
        operation_class=documented_body(VlogLinkIn),
    )
    async def create_link(
        self, principal: CallerPrincipal, request: Request
    ) -> Response[VlogCreated]:
        require_json(request)
        raw = written_as(principal, decode_json(await request.body()))
        record = convert_record(raw, VlogLinkIn)
        fields = {
            "user_id": record.user_id,
            "video_url": record.video_url,
            "title": record.title,
            "description": record.description,
            "duration": record.duration,
            "timestamp": record.timestamp,
        }
        vlog = await services.create_link(fields, study_of(principal), credential_id(principal))
        return created_answer(vlog, False, "Vlog created successfully")

    @get(
        "/",
        operation_id="listVlogs",
        guards=[requires(*OWN_READERS)],
        summary="List vlogs, newest first (`Link` header for the next page)",
    )
    async def list_vlogs(
        self,
        disguise: CallerDisguise,
        request: Request,
        window: MongoFilter,
        in_state: StateFilter = VlogState.READY,
        order: OrderParameter = Order.DESC,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> Response[list[VlogOut]]:
        vlogs, next_cursor = await services.list_page(
            {**window, "state": in_state}, order, limit, cursor, disguise
        )
        headers = next_page_headers(self.path, dict(request.query_params), next_cursor)
        return Response(vlogs, headers=headers)

    @get(
        "/count",
        operation_id="countVlogs",
        guards=[requires(*OWN_READERS)],
        summary="How many vlogs, and their bytes",
    )
    async def count(self, window: MongoFilter) -> VlogCount:
        number, total = await services.count({**window, "state": VlogState.READY})
        return VlogCount(count=number, total_bytes=total)

    @get(
        "/activity",
        operation_id="vlogActivity",
        guards=[requires(*READERS)],
        summary="Per participant: vlogs, bytes, seconds, first and last; and per local day of "
        "their study the vlogs and their seconds",
    )
    async def activity(
        self, settings: Settings, request: Request, window: MongoFilter
    ) -> list[ParticipantVlogDays]:
        zones = await StudyZones.load(settings.display_timezone)
        rows = await activity.activity({**window, "state": VlogState.READY}, zones)
        return await disguised_rows(request, rows)

    @get(
        "/participants",
        operation_id="vlogParticipants",
        guards=[requires(*READERS)],
        summary="Per participant: vlogs, bytes, total duration, first and last recording",
    )
    async def participants(
        self, disguise: CallerDisguise, window: MongoFilter
    ) -> list[ParticipantVlogs]:
        query = {**window, "state": VlogState.READY}
        return await activity.participants(query, disguise)

    @get(
        "/download/{filename:str}",
        operation_id="downloadVlogByName",
        cache_control=STORED_BYTES_CACHING,
        opt={ALSO_SERVED_AS: VIDEO_ANSWER},
        responses=RANGE_RESPONSES,
        guards=[requires(*READERS)],
        summary="The seed's download path: `<id>.<ext>` as given in `video_url`",
    )
    async def download_by_name(self, request: Request, filename: VlogIdPath) -> Response[Any]:
        try:
            vlog = await _stored_vlog(request, filename)
        except NotFound:
            raise NotFound("Video file not found") from None
        return _original(request, vlog, "attachment")

    @get(
        "/{vlog_id:str}",
        operation_id="getVlog",
        guards=[requires(*OWN_READERS)],
        summary="One vlog",
    )
    async def get_one(self, request: Request, vlog_id: VlogIdPath) -> VlogOut:
        vlog = await services.get_vlog(services.parse_vlog_id(vlog_id), scope=_scope(request))
        return services.to_wire(await _shown(request, vlog))

    @get(
        "/{vlog_id:str}/download",
        operation_id="downloadVlog",
        cache_control=STORED_BYTES_CACHING,
        opt={ALSO_SERVED_AS: VIDEO_ANSWER},
        responses=RANGE_RESPONSES,
        guards=[requires(*OWN_READERS)],
        summary="The original video, as an attachment named after the title",
    )
    async def download(self, request: Request, vlog_id: VlogIdPath) -> Response[Any]:
        return _original(request, await _stored_vlog(request, vlog_id), "attachment")

    @get(
        "/{vlog_id:str}/play",
        operation_id="playVlog",
        cache_control=STORED_BYTES_CACHING,
        opt={ALSO_SERVED_AS: VIDEO_ANSWER},
        responses=RANGE_RESPONSES,
        guards=[requires(*OWN_READERS)],
        summary="For a player: the H.264 preview when there is one, else the original, inline",
    )
    async def play(self, request: Request, vlog_id: VlogIdPath) -> Response[Any]:
        vlog = await _stored_vlog(request, vlog_id)
        if vlog.get("preview_state") != PreviewState.READY:
            return _original(request, vlog, "inline")
        name = services.download_name(vlog, ".preview.mp4")
        return send_stored(
            request,
            storage_id=vlog["preview_storage_id"],
            size=vlog["preview_size"],
            etag=f'"{vlog["sha256"]}-preview"',
            content_type="video/mp4",
            disposition=content_disposition("inline", name),
        )

    @get(
        "/{vlog_id:str}/thumbnail",
        operation_id="vlogThumbnail",
        cache_control=STORED_BYTES_CACHING,
        opt={ALSO_SERVED_AS: THUMBNAIL_ANSWER},
        guards=[requires(*OWN_READERS)],
        summary="A JPEG of a frame near the start",
    )
    async def thumbnail(self, request: Request, vlog_id: VlogIdPath) -> Response[bytes]:
        vlog = await services.get_vlog(
            services.parse_vlog_id(vlog_id), with_thumbnail=True, scope=_scope(request)
        )
        if not vlog.get("thumbnail"):
            raise NotFound(f"Vlog {vlog_id} has no thumbnail")
        return Response(
            bytes(vlog["thumbnail"]),
            media_type="image/jpeg",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    @json_body
    @patch(
        "/{vlog_id:str}",
        operation_id="editVlog",
        guards=[may_write()],
        summary="Change the title or description (the admin any vlog; a participant their "
        "own; a device only what it uploaded: another is 404)",
    )
    async def edit(
        self,
        principal: CallerPrincipal,
        request: Request,
        vlog_id: VlogIdPath,
        changes: Record[VlogEdit],
    ) -> VlogOut:
        given = {"title": changes.title, "description": changes.description}
        fields = {name: value.strip() for name, value in given.items() if value is not None}
        vlog = await services.edit(services.parse_vlog_id(vlog_id), fields, edit_scope(principal))
        return services.to_wire(await _shown(request, vlog))

    @delete(
        "/{vlog_id:str}",
        operation_id="deleteVlog",
        guards=[requires(Role.ADMIN)],
        summary="Delete one vlog and its bytes",
        status_code=200,
    )
    async def delete_one(self, storage: Storage, vlog_id: VlogIdPath) -> DeletedVlogs:
        return await services.delete_one(storage, services.parse_vlog_id(vlog_id))

    @delete(
        "/participants/{user_id:str}",
        operation_id="deleteParticipantVlogs",
        guards=[requires(Role.ADMIN)],
        summary="Delete every vlog of one participant (of one study, with `study_id`), "
        "bytes, previews and thumbnails included",
        status_code=200,
    )
    async def delete_participant(
        self, storage: Storage, user_id: ParticipantPath, study_id: StudyFilter = None
    ) -> DeletedVlogs:
        return await services.delete_participant(storage, user_id, study_id)

    @delete(
        "/studies/{study_id:str}",
        operation_id="deleteStudyVlogs",
        guards=[requires(Role.ADMIN)],
        summary="Delete every vlog of one study, bytes, previews and thumbnails included",
        status_code=200,
    )
    async def delete_study(self, storage: Storage, study_id: StudyPath) -> DeletedVlogs:
        return await services.delete_study(storage, study_id)

    @post(
        "/maintenance/cleanup",
        operation_id="cleanupUploads",
        guards=[requires(Role.ADMIN)],
        summary="Remove uploads that never completed (also runs every few minutes)",
        status_code=200,
    )
    async def cleanup(
        self, settings: Settings, storage: Storage, resumable: ResumableUploads
    ) -> CleanupReport:
        older = timedelta(seconds=settings.stale_upload_seconds)
        removed = await services.remove_stale_uploads(storage, older)
        removed += await resumable.remove_expired()
        return CleanupReport(removed_uploads=removed)
