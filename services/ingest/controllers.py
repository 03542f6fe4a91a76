"""HTTP handlers of the ingest service: sentiments, GPS fixes, per-participant views."""

import asyncio

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.response import Stream

from services.common.research.auth import (
    OWN_READERS,
    READERS,
    Role,
    from_gateway,
    may_write,
    own_scope,
    principal_of,
    requires,
    study_of,
)
from services.common.research.deps import CallerDisguise, CallerPrincipal
from services.common.research.filters import (
    TIME_AND_PARTICIPANT,
    MongoFilter,
    ParticipantPath,
    StudyFilter,
    StudyPath,
    participant_window,
)
from services.common.research.privacy import disguised_rows
from services.common.research.studies import StudyZones
from services.common.web.errors import NotFound
from services.common.web.openapi import (
    NDJSON_MEDIA_TYPE,
    RecordIdPath,
    documented_body,
    error_responses,
)
from services.common.web.pagination import (
    DEFAULT_PAGE_SIZE,
    CursorParameter,
    Order,
    OrderParameter,
    PageSize,
    decode_cursor,
    encode_cursor,
    next_page_headers,
)
from services.common.web.schemas import (
    RELAYED_POSTS_MOST,
    PostAnswers,
)
from services.common.web.validation import read_body, require_json
from services.ingest import deletions, services, summaries
from services.ingest.activity import participant_activity
from services.ingest.daily import daily_rows, ndjson_lines
from services.ingest.deps import Settings, provide_gps_filter, provide_sentiment_filter
from services.ingest.kinds import GPS_FIXES, SENTIMENTS, TelemetryKind
from services.ingest.posts import (
    RELAYED_ENTRY_BYTES,
    answer_alone,
    relayed_posts,
    store_one,
)
from services.ingest.schemas import (
    BatchResult,
    Count,
    Created,
    DeletedTelemetry,
    ParticipantActivity,
    ParticipantPage,
    ParticipantTelemetry,
    TelemetryTotals,
    TimelinePoint,
)
from services.ingest.settings import BATCH_BODY_CEILING

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


def records_controller(kind: TelemetryKind, route: str, tag: str, selection: Provide) -> type:
    """The controller of one kind of telemetry: sentiments and GPS fixes behave alike.

    Annotations here are evaluated when the function runs (this module does not use
    `from __future__ import annotations`), so each controller documents its own types."""
    one, many = kind.operation_name, kind.operation_name_plural

    class RecordsController(Controller):
        path = route
        tags = [tag]
        dependencies = {**TIME_AND_PARTICIPANT, "selection": selection}

        @post(
            "/",
            operation_id=f"create{one}",
            guards=[may_write()],
            summary=f"Store one {kind.noun}",
            operation_class=documented_body(kind.record_in),
            # 409: a record with this participant and client_id is already stored.
            responses=error_responses(409),
            status_code=201,
        )
        async def create(self, request: Request) -> Created[kind.record_out]:  # type: ignore[name-defined]  # the kind's own type, resolved by Litestar
            require_json(request)
            return await store_one(kind, request, await request.body(), principal_of(request))

        @post(
            "/posts",
            operation_id=f"create{many}Relayed",
            # Only the gateway relays posts together (services.gateway.proxy.coalescing):
            # each carries its own credential, checked here as `create` checks one.
            guards=[from_gateway("relays posts together")],
            include_in_schema=False,
            request_max_body_size=RELAYED_POSTS_MOST * RELAYED_ENTRY_BYTES + 2,
            status_code=200,
        )
        async def create_relayed(self, request: Request) -> PostAnswers:
            require_json(request)
            posts = relayed_posts(await request.body())
            answers = await asyncio.gather(*(answer_alone(kind, request, post) for post in posts))
            return PostAnswers(answers=answers)

        @post(
            "/batch",
            operation_id=f"create{one}Batch",
            guards=[may_write()],
            summary=f"Store many {kind.noun_plural} at once, idempotently",
            description=BATCH_DESCRIPTION,
            operation_class=documented_body(kind.record_in, batch=True),
            request_max_body_size=BATCH_BODY_CEILING,
            status_code=200,
        )
        async def create_batch(
            self, settings: Settings, principal: CallerPrincipal, request: Request
        ) -> BatchResult:
            body = await read_body(request, settings.max_batch_bytes)
            content_type = request.headers.get("content-type", "")
            items = services.split_batch(body, content_type, settings.max_batch_records)
            items = services.batch_as_participant(principal, items)
            return await services.insert_batch(
                kind,
                items,
                settings.max_ahead,
                request.app.state.batch_turns,
                study_of(principal),
            )

        @get(
            "/",
            operation_id=f"list{many}",
            guards=[requires(*OWN_READERS)],
            summary=f"List {kind.noun_plural}",
            description=LIST_DESCRIPTION,
        )
        async def list_records(
            self,
            settings: Settings,
            disguise: CallerDisguise,
            request: Request,
            selection: MongoFilter,
            order: OrderParameter = Order.DESC,
            limit: PageSize = DEFAULT_PAGE_SIZE,
            cursor: CursorParameter = None,
        ) -> Response[list[kind.record_out]]:  # type: ignore[name-defined]  # resolved by Litestar
            records, next_cursor = await services.list_page(
                kind,
                selection,
                order,
                limit,
                cursor,
                settings.max_ahead,
                disguise,
            )
            query = dict(request.query_params)
            return Response(records, headers=next_page_headers(route, query, next_cursor))

        @get(
            "/count",
            operation_id=f"count{many}",
            guards=[requires(*OWN_READERS)],
            summary=f"Count {kind.noun_plural}",
        )
        async def count(self, selection: MongoFilter) -> Count:
            return Count(count=await services.count(kind, selection))

        @get(
            "/stream",
            operation_id=f"stream{many}",
            guards=[requires(*OWN_READERS)],
            summary=f"Every matching {kind.noun} as NDJSON, oldest first",
            media_type=NDJSON_MEDIA_TYPE,
        )
        async def stream(
            self, settings: Settings, disguise: CallerDisguise, selection: MongoFilter
        ) -> Stream:
            records = services.stream_ndjson(kind, selection, settings.max_ahead, disguise)
            return Stream(records, media_type=NDJSON_MEDIA_TYPE)

        @get(
            "/{record_id:str}",
            operation_id=f"get{one}",
            guards=[requires(*OWN_READERS)],
            summary=f"One {kind.noun}",
        )
        async def get_one(
            self, disguise: CallerDisguise, principal: CallerPrincipal, record_id: RecordIdPath
        ) -> kind.record_out:  # type: ignore[name-defined]  # resolved by Litestar
            # Another participant's record is as if it did not exist.
            return await services.get_one(kind, record_id, own_scope(principal), disguise)

    RecordsController.__name__ = RecordsController.__qualname__ = f"{one}Controller"
    return RecordsController


SentimentController = records_controller(
    SENTIMENTS, "/api/sentiments", "sentiments", Provide(provide_sentiment_filter)
)
GpsController = records_controller(GPS_FIXES, "/api/gps", "gps", Provide(provide_gps_filter))


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
        return await summaries.totals(window)

    @get(
        "/timeline",
        operation_id="telemetryTimeline",
        guards=[requires(*READERS)],
        summary="Per local day (of each study's time zone) and emotion: count and mean intensity",
    )
    async def timeline(self, settings: Settings, window: MongoFilter) -> list[TimelinePoint]:
        return await summaries.timeline(window, settings.display_timezone)

    @get(
        "/activity",
        operation_id="participantActivity",
        guards=[requires(*READERS)],
        summary="Per participant and local day of their study: sentiments, GPS fixes, hours "
        "with a fix; and their last record of each kind",
    )
    async def activity(
        self, settings: Settings, request: Request, window: MongoFilter
    ) -> list[ParticipantActivity]:
        rows = await participant_activity(window, settings.display_timezone)
        return await disguised_rows(request, rows)

    @get(
        "/daily",
        operation_id="participantDays",
        guards=[requires(*READERS)],
        summary="Per participant and local day of their study: sentiments per emotion, "
        "GPS coverage, distance, radius of gyration, places and time at home (NDJSON)",
        description="The methods are in the export codebook (`/api/export/codebook.json`, "
        "kind `daily`). One participant's records are read at a time, in time order.",
        media_type=NDJSON_MEDIA_TYPE,
    )
    async def daily(
        self, settings: Settings, disguise: CallerDisguise, window: MongoFilter
    ) -> Stream:
        zones = await StudyZones.load(settings.display_timezone)
        rows = daily_rows(window, zones, settings.max_ahead, disguise)
        return Stream(ndjson_lines(rows), media_type=NDJSON_MEDIA_TYPE)

    @get(
        "/participants",
        operation_id="listParticipants",
        guards=[requires(*READERS)],
        summary="Per participant: counts, first and last activity, mean intensity per emotion",
    )
    async def participants(
        self,
        disguise: CallerDisguise,
        window: MongoFilter,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> ParticipantPage:
        after = decode_cursor(cursor, tuple[str])[0] if cursor else None
        rows, last = await summaries.participant_summaries(window, after, limit, disguise)
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
        self, request: Request, span: MongoFilter, user_id: ParticipantPath
    ) -> ParticipantTelemetry:
        window = await participant_window(request, span, user_id)
        rows, _ = await summaries.participant_summaries(window, None, 1)
        if not rows:
            raise NotFound(f"No telemetry for participant {user_id!r}")
        # As the caller named them (a viewer of a pseudonymous study: the pseudonym).
        return msgspec.structs.replace(rows[0], user_id=user_id)

    @delete(
        "/participants/{user_id:str}",
        operation_id="deleteParticipantTelemetry",
        guards=[requires(Role.ADMIN)],
        summary="Delete every sentiment and GPS fix of one participant (of one study, "
        "with `study_id`), their rollups with them",
        status_code=200,
    )
    async def delete_participant(
        self, user_id: ParticipantPath, study_id: StudyFilter = None
    ) -> DeletedTelemetry:
        return await deletions.delete_participant(user_id, study_id)

    @delete(
        "/studies/{study_id:str}",
        operation_id="deleteStudyTelemetry",
        guards=[requires(Role.ADMIN)],
        summary="Delete every sentiment and GPS fix of one study, its rollups with them",
        status_code=200,
    )
    async def delete_study(self, study_id: StudyPath) -> DeletedTelemetry:
        return await deletions.delete_study(study_id)
