"""HTTP handlers of the ingest service: sentiments, GPS fixes, per-participant views."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, PathParameter, QueryParameter
from litestar.response import Stream

from services.common.auth import READERS, WRITERS, Role, requires
from services.common.errors import NotFound
from services.common.openapi import documented_body
from services.common.pagination import (
    DEFAULT_PAGE_SIZE,
    CursorParameter,
    Order,
    OrderParameter,
    PageSize,
    decode_cursor,
    encode_cursor,
    next_page_headers,
)
from services.common.schemas import PARTICIPANT_PATTERN, PARTICIPANT_RULE
from services.common.validation import decode_json, read_body
from services.ingest import services
from services.ingest.schemas import (
    BatchResult,
    Count,
    DeletedTelemetry,
    GpsFixCreated,
    GpsFixIn,
    GpsFixOut,
    ParticipantPage,
    ParticipantTelemetry,
    SentimentCreated,
    SentimentIn,
    SentimentOut,
    TelemetryTotals,
)
from services.ingest.services import GPS_FIXES, SENTIMENTS, TelemetryKind
from services.ingest.settings import BATCH_BODY_CEILING, IngestSettings

ParticipantPath = Annotated[
    str,
    PathParameter(
        pattern=PARTICIPANT_PATTERN, description=f"The participant's id: {PARTICIPANT_RULE}"
    ),
]
ParticipantFilter = Annotated[
    str | None,
    QueryParameter(
        pattern=PARTICIPANT_PATTERN,
        description=f"Only this participant ({PARTICIPANT_RULE}).",
    ),
]
InstantFilter = Annotated[
    str | None,
    QueryParameter(
        max_length=64,
        description="ISO 8601 (no offset = UTC) or epoch seconds. `since` is inclusive, "
        "`until` exclusive.",
    ),
]
NDJSON = "application/x-ndjson"
# A query the dependencies below build from validated scalar parameters.
MongoFilter = NamedDependency[dict[str, Any]]


async def provide_span(since: InstantFilter = None, until: InstantFilter = None) -> dict[str, Any]:
    return services.time_span(since, until)


async def provide_window(span: MongoFilter, user_id: ParticipantFilter = None) -> dict[str, Any]:
    return {**span, "user_id": user_id} if user_id is not None else span


async def provide_sentiment_filter(
    window: MongoFilter,
    emotion: Annotated[
        str | None, QueryParameter(max_length=64, description="Only this emotion (any case).")
    ] = None,
) -> dict[str, Any]:
    return {**window, "emotion": emotion.strip().lower()} if emotion is not None else window


async def provide_gps_filter(
    window: MongoFilter,
    bbox: Annotated[
        str | None,
        QueryParameter(
            max_length=200,
            description="Only fixes inside minLon,minLat,maxLon,maxLat (WGS 84, OGC order; "
            "minLon > maxLon crosses the antimeridian).",
        ),
    ] = None,
) -> dict[str, Any]:
    return {**window, **services.bounding_box(bbox)} if bbox is not None else window


TIME_AND_PARTICIPANT = {"span": Provide(provide_span), "window": Provide(provide_window)}


def _settings(request: Request) -> IngestSettings:
    return request.app.state.settings


def _max_ahead(request: Request) -> timedelta:
    return timedelta(seconds=_settings(request).max_seconds_ahead)


async def _create(request: Request, kind: TelemetryKind) -> tuple[str, Any]:
    body = await request.body()
    document = await services.insert_one(kind, decode_json(body), _max_ahead(request))
    return str(document["_id"]), kind.to_wire(document)


async def _create_batch(request: Request, kind: TelemetryKind) -> BatchResult:
    settings = _settings(request)
    body = await read_body(request, settings.max_batch_bytes)
    items = services.split_batch(
        body, request.headers.get("content-type", ""), settings.max_batch_records
    )
    return await services.insert_batch(kind, items, _max_ahead(request))


async def _page(
    request: Request, kind: TelemetryKind, selection: MongoFilter, order: Order, limit: int
) -> Response[list[Any]]:
    records, next_cursor = await services.list_page(
        kind, selection, order, limit, request.query_params.get("cursor")
    )
    headers = next_page_headers(request.url.path, dict(request.query_params), next_cursor)
    return Response(records, headers=headers)


def _stream(kind: TelemetryKind, selection: MongoFilter) -> Stream:
    return Stream(services.stream_ndjson(kind, selection), media_type=NDJSON)


BATCH_DESCRIPTION = (
    "A JSON array, or NDJSON (`Content-Type: application/x-ndjson`, one record per "
    "line). Every valid record is stored; each rejected one is reported by its index "
    "with the reason. Records carrying a `client_id` already stored for the same "
    "participant count as duplicates and are not stored again, so a resent batch is safe."
)
LIST_DESCRIPTION = (
    "A JSON array, newest first unless `order=asc`. When more records match, the "
    '`Link: <...>; rel="next"` and `X-Next-Cursor` headers give the next page.'
)


class SentimentController(Controller):
    path = "/api/sentiments"
    tags = ["sentiments"]
    dependencies = {
        **TIME_AND_PARTICIPANT,
        "selection": Provide(provide_sentiment_filter),
    }

    @post(
        "/",
        operation_id="createSentiment",
        guards=[requires(*WRITERS)],
        summary="Store one sentiment",
        operation_class=documented_body(SentimentIn),
        status_code=201,
    )
    async def create(self, request: Request) -> SentimentCreated:
        record_id, record = await _create(request, SENTIMENTS)
        return SentimentCreated(message=SENTIMENTS.created_message, id=record_id, record=record)

    @post(
        "/batch",
        operation_id="createSentimentBatch",
        guards=[requires(*WRITERS)],
        summary="Store many sentiments at once, idempotently",
        description=BATCH_DESCRIPTION,
        operation_class=documented_body(SentimentIn, batch=True),
        request_max_body_size=BATCH_BODY_CEILING,
        status_code=200,
    )
    async def create_batch(self, request: Request) -> BatchResult:
        return await _create_batch(request, SENTIMENTS)

    @get(
        "/",
        operation_id="listSentiments",
        guards=[requires(*READERS)],
        summary="List sentiments",
        description=LIST_DESCRIPTION,
    )
    async def list_records(
        self,
        request: Request,
        selection: MongoFilter,
        order: OrderParameter = Order.DESC,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> Response[list[SentimentOut]]:
        return await _page(request, SENTIMENTS, selection, order, limit)

    @get(
        "/count",
        operation_id="countSentiments",
        guards=[requires(*READERS)],
        summary="Count sentiments",
    )
    async def count(self, selection: MongoFilter) -> Count:
        return Count(count=await services.count(SENTIMENTS, selection))

    @get(
        "/stream",
        operation_id="streamSentiments",
        guards=[requires(*READERS)],
        summary="Every matching sentiment as NDJSON, oldest first",
        media_type=NDJSON,
    )
    async def stream(self, selection: MongoFilter) -> Stream:
        return _stream(SENTIMENTS, selection)

    @get(
        "/{record_id:str}",
        operation_id="getSentiment",
        guards=[requires(*READERS)],
        summary="One sentiment",
    )
    async def get_one(self, record_id: FromPath[str]) -> SentimentOut:
        return await services.get_one(SENTIMENTS, record_id)


class GpsController(Controller):
    path = "/api/gps"
    tags = ["gps"]
    dependencies = {**TIME_AND_PARTICIPANT, "selection": Provide(provide_gps_filter)}

    @post(
        "/",
        operation_id="createGpsFix",
        guards=[requires(*WRITERS)],
        summary="Store one GPS fix",
        operation_class=documented_body(GpsFixIn),
        status_code=201,
    )
    async def create(self, request: Request) -> GpsFixCreated:
        record_id, record = await _create(request, GPS_FIXES)
        return GpsFixCreated(message=GPS_FIXES.created_message, id=record_id, record=record)

    @post(
        "/batch",
        operation_id="createGpsFixBatch",
        guards=[requires(*WRITERS)],
        summary="Store many GPS fixes at once, idempotently",
        description=BATCH_DESCRIPTION,
        operation_class=documented_body(GpsFixIn, batch=True),
        request_max_body_size=BATCH_BODY_CEILING,
        status_code=200,
    )
    async def create_batch(self, request: Request) -> BatchResult:
        return await _create_batch(request, GPS_FIXES)

    @get(
        "/",
        operation_id="listGpsFixes",
        guards=[requires(*READERS)],
        summary="List GPS fixes",
        description=LIST_DESCRIPTION,
    )
    async def list_records(
        self,
        request: Request,
        selection: MongoFilter,
        order: OrderParameter = Order.DESC,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> Response[list[GpsFixOut]]:
        return await _page(request, GPS_FIXES, selection, order, limit)

    @get(
        "/count",
        operation_id="countGpsFixes",
        guards=[requires(*READERS)],
        summary="Count GPS fixes",
    )
    async def count(self, selection: MongoFilter) -> Count:
        return Count(count=await services.count(GPS_FIXES, selection))

    @get(
        "/stream",
        operation_id="streamGpsFixes",
        guards=[requires(*READERS)],
        summary="Every matching GPS fix as NDJSON, oldest first",
        media_type=NDJSON,
    )
    async def stream(self, selection: MongoFilter) -> Stream:
        return _stream(GPS_FIXES, selection)

    @get(
        "/{record_id:str}",
        operation_id="getGpsFix",
        guards=[requires(*READERS)],
        summary="One GPS fix",
    )
    async def get_one(self, record_id: FromPath[str]) -> GpsFixOut:
        return await services.get_one(GPS_FIXES, record_id)


class TelemetryController(Controller):
    """Views across both kinds of telemetry, per participant."""

    path = "/api/telemetry"
    tags = ["participants"]
    dependencies = TIME_AND_PARTICIPANT

    @get(
        "/summary",
        operation_id="telemetryTotals",
        guards=[requires(*READERS)],
        summary="Totals, time span and emotion distribution",
    )
    async def summary(self, window: MongoFilter) -> TelemetryTotals:
        return await services.totals(window)

    @get(
        "/participants",
        operation_id="listParticipants",
        guards=[requires(*READERS)],
        summary="Per participant: counts, first and last activity, mean intensity per emotion",
    )
    async def participants(
        self,
        window: MongoFilter,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> ParticipantPage:
        after = decode_cursor(cursor, tuple[str])[0] if cursor else None
        rows, last = await services.participant_summaries(window, after, limit)
        return ParticipantPage(
            participants=rows, next_cursor=encode_cursor((last,)) if last else None
        )

    @get(
        "/participants/{user_id:str}",
        operation_id="getParticipant",
        guards=[requires(*READERS)],
        summary="One participant's summary",
    )
    async def participant(
        self, span: MongoFilter, user_id: ParticipantPath
    ) -> ParticipantTelemetry:
        rows, _ = await services.participant_summaries({**span, "user_id": user_id}, None, 1)
        if not rows:
            raise NotFound(f"No telemetry for participant {user_id!r}")
        return rows[0]

    @delete(
        "/participants/{user_id:str}",
        operation_id="deleteParticipantTelemetry",
        guards=[requires(Role.ADMIN)],
        summary="Delete every sentiment and GPS fix of one participant",
        status_code=200,
    )
    async def delete_participant(self, user_id: ParticipantPath) -> DeletedTelemetry:
        return await services.delete_participant(user_id)
