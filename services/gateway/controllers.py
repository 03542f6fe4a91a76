"""HTTP handlers of the gateway: health, the docs index, and the proxy mounts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, MediaType, Request, Response, asgi, get
from litestar.di import NamedDependency, Provide
from litestar.handlers import ASGIRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream, Template
from litestar.types import Receive, Scope, Send

from services.common.research import codebook
from services.common.research.auth import READERS, is_viewer, requires
from services.common.research.filters import (
    InstantFilter,
    ParticipantFilter,
    StudyFilter,
    time_span,
)
from services.common.research.localdays import local_midnight
from services.common.web.errors import NotFound, field_error
from services.common.web.openapi import ALSO_SERVED_AS, BINARY, TEXT
from services.common.web.pagination import decode_cursor
from services.common.web.schemas import Liveness, utc_now
from services.common.web.validation import ANY_QUERY
from services.gateway import codebook_documents
from services.gateway.charts import emotion_distribution, intensity_over_time
from services.gateway.cockpit import heatmap, heatmap_days, stopped
from services.gateway.compliance import as_csv, read_report
from services.gateway.export import (
    MEDIA_TYPES,
    PARTICIPANTS_PER_PAGE,
    VLOGS_PER_PAGE,
    export_all,
    export_file,
    export_zip,
    human_bytes,
    local_time,
    merge_participants,
    section,
    vlog_totals,
)
from services.gateway.health import gateway_health
from services.gateway.maps import as_script_data, fallback_svg, read_track
from services.gateway.pages import page
from services.gateway.schemas import ComplianceReport, GatewayHealth
from services.gateway.services import ROUTES, ReverseProxy
from services.gateway.settings import GatewaySettings
from services.gateway.turns import ExportTurns
from services.gateway.upstream import ServiceApi

DOCS = (
    ("gateway", "Gateway: health, exports"),
    ("ingest", "Ingest: sentiments and GPS fixes"),
    ("media", "Media: vlogs and videos"),
    ("admin", "Admin: users, characters, configs, logs"),
)


class HealthController(Controller):
    path = "/"
    tags = ["health"]

    @get(
        "/health",
        operation_id="health",
        summary="Every service and the database",
        # Unhealthy is still the report, with the failing part marked `down`.
        responses={
            503: ResponseSpec(
                data_container=GatewayHealth,
                description="A service or the database is down (the report says which)",
            )
        },
    )
    async def health(self, request: Request) -> Response[GatewayHealth]:
        proxy: ReverseProxy = request.app.state.proxy
        report = await gateway_health(proxy)
        return Response(report, status_code=200 if report.status == "healthy" else 503)

    @get("/ready", operation_id="ready", summary="Liveness of the gateway process itself")
    async def ready(self) -> Liveness:
        return Liveness(status="healthy", service="gateway", timestamp=utc_now())


class PagesController(Controller):
    path = "/"
    tags = ["pages"]
    include_in_schema = False

    @get("/", operation_id="home", media_type=MediaType.HTML, opt={ANY_QUERY: True})
    async def home(self, request: Request) -> Template:
        return page(request, "home.html.j2", {"docs": DOCS})

    @get("/docs", operation_id="docs_index", media_type=MediaType.HTML, opt={ANY_QUERY: True})
    async def docs_index(self, request: Request) -> Template:
        return page(request, "docs.html.j2", {"docs": DOCS})


def proxy_mount(service: str, prefixes: tuple[str, ...]) -> ASGIRouteHandler:
    """One mount per service: every path under its prefixes goes to it unchanged."""

    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        proxy: ReverseProxy = scope["litestar_app"].state.proxy
        await proxy.forward(service, scope, receive, send)

    forward.__name__ = f"proxy_{service}"
    return asgi(path=list(prefixes), is_mount=True, name=f"proxy_{service}", copy_scope=False)(
        forward
    )


PROXY_MOUNTS = [proxy_mount(service, prefixes) for service, prefixes in ROUTES.items()]


async def provide_export_filters(
    user_id: ParticipantFilter = None,
    since: InstantFilter = None,
    until: InstantFilter = None,
    study_id: StudyFilter = None,
) -> dict[str, Any]:
    """The page's filters, checked here (422 naming the field) and passed on as given;
    the services decide whether the credential covers the study."""
    time_span(since, until)
    return {"user_id": user_id, "since": since, "until": until, "study_id": study_id}


async def provide_compliance_filters(
    user_id: ParticipantFilter = None, study_id: StudyFilter = None
) -> dict[str, Any]:
    return {"user_id": user_id, "study_id": study_id}


def page_time_zone(studies: list[dict[str, Any]], chosen: str | None, fallback: str) -> str:
    """The page's times are in the chosen study's time zone, or in that of the only
    study the caller sees; otherwise (or until the study has one) in `fallback`."""
    if chosen is None and len(studies) == 1:
        chosen = studies[0]["study_id"]
    zone = next((s.get("time_zone") for s in studies if s["study_id"] == chosen), None)
    return zone or fallback


ONE_MS = timedelta(milliseconds=1)
# A map shows a participant's newest two weeks unless asked for more: a semester of
# fixes every ten minutes is 17,000 points, most of a second to read on the embedded
# database.
MAP_DAYS = 14
MAP_SPANS = (("two weeks", 14), ("two months", 60), ("every day", 0))
MapDays = Annotated[
    int,
    QueryParameter(ge=0, le=3660, description="The newest days with fixes shown; 0: all."),
]


def _days_before(last: str, days: int, zone: str) -> str:
    """The start of the local day `days - 1` days before the one of `last`, as UTC."""
    local = ZoneInfo(zone)
    day = datetime.fromisoformat(last).astimezone(local).date() - timedelta(days=days - 1)
    return local_midnight(day, local).isoformat() + "Z"


def _local_date(instant: datetime | None, zone: str) -> date | None:
    if instant is None:
        return None
    return instant.replace(tzinfo=instant.tzinfo or UTC).astimezone(ZoneInfo(zone)).date()


ExportFilters = NamedDependency[dict[str, Any]]
EXPORT_NAME = re.compile(r"^(sentiments|gps|vlogs|daily)\.(csv|ndjson|json|parquet)$")
VlogsCursor = Annotated[str | None, QueryParameter(max_length=200, description="Vlog page.")]
PeopleCursor = Annotated[str | None, QueryParameter(max_length=200, description="Table page.")]


def _api(request: Request) -> ServiceApi:
    proxy: ReverseProxy = request.app.state.proxy
    settings: GatewaySettings = request.app.state.settings
    authorization = request.headers.get("authorization")
    return ServiceApi(
        session=proxy.session,
        upstreams=proxy.upstreams,
        authorization=authorization,
        request_id=request.scope.get("state", {}).get("request_id"),
        fallback_zone=settings.display_timezone,
        viewer=is_viewer(authorization, settings.credentials),
    )


async def _started(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Reads the first piece before the response starts, so that a refusal or a down
    service still becomes a proper error response instead of a broken download."""
    try:
        first = await anext(pieces)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for piece in pieces:
            yield piece

    return rest()


async def _in_turn(request: Request, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A large export (ZIP, Parquet) started in its turn (services.gateway.turns)."""
    turns: ExportTurns = request.app.state.export_turns
    await turns.take()
    try:
        started = await _started(pieces)
    except BaseException:
        turns.give_back()
        raise
    return turns.holding(started)


def _attachment(name: str, media_type: str, pieces: AsyncIterator[bytes], **headers: str) -> Stream:
    return Stream(
        pieces,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            **headers,
        },
    )


def _stamp() -> str:
    return utc_now().strftime("%Y%m%d-%H%M%S")


class ExportController(Controller):
    """The page TAs open, and the downloads it links to."""

    path = "/"
    tags = ["export"]
    guards = [requires(*READERS)]
    dependencies = {"filters": Provide(provide_export_filters)}

    @get(
        "/export",
        operation_id="exportPage",
        media_type=MediaType.HTML,
        include_in_schema=False,
        opt={ANY_QUERY: True},
    )
    async def page(
        self,
        request: Request,
        filters: ExportFilters,
        vlogs_cursor: VlogsCursor = None,
        people_cursor: PeopleCursor = None,
    ) -> Template:
        api = _api(request)
        settings: GatewaySettings = request.app.state.settings
        # The cockpit covers the chosen study and participant, whatever the time filters;
        # without time filters, one read of the vlogs serves the cockpit and the table.
        who = {k: filters[k] for k in ("study_id", "user_id") if filters[k]}
        vlog_activity = asyncio.ensure_future(api.json("media", "/api/vlogs/activity", filters))
        same_vlogs = vlog_activity if not (filters["since"] or filters["until"]) else None
        page_of_people = {**filters, "limit": PARTICIPANTS_PER_PAGE, "cursor": people_cursor}
        page_of_vlogs = {**filters, "limit": VLOGS_PER_PAGE, "cursor": vlogs_cursor}
        parts = await asyncio.gather(
            section(api.json("ingest", "/api/telemetry/participants", page_of_people)),
            section(api.json("admin", "/api/studies")),
            section(api.json("ingest", "/api/telemetry/summary", filters)),
            section(api.json("ingest", "/api/telemetry/timeline", filters)),
            section(vlog_activity),
            section(api.get("media", "/api/vlogs", page_of_vlogs)),
            section(read_report(api, who, utc_now(), settings.display_timezone, vlogs=same_vlogs)),
        )
        people, studies, summary, timeline, vlogs, vlog_page, cockpit = parts
        telemetry_page = people[0] or {"participants": [], "next_cursor": None}
        shown = telemetry_page["participants"]
        vlog_count, vlog_people = vlog_totals(vlogs[0] or [])
        rows = merge_participants(
            shown,
            vlog_people,
            after=decode_cursor(people_cursor, tuple[str])[0] if people_cursor else None,
            through=shown[-1]["user_id"] if shown and telemetry_page["next_cursor"] else None,
        )
        visible = studies[0] or []
        zone = page_time_zone(visible, filters["study_id"], settings.display_timezone)
        compliance = cockpit[0] or ComplianceReport(
            generated_at=utc_now(), studies=[], participants=[]
        )
        span = time_span(filters["since"], filters["until"]).get("timestamp", {})
        days = heatmap_days(
            compliance,
            _local_date(span.get("$gte"), zone),
            _local_date(span["$lt"] - ONE_MS, zone) if "$lt" in span else None,
        )
        vlogs_response = vlog_page[0]
        return page(
            request,
            "export.html.j2",
            {
                "filters": filters,
                "query": urlencode({k: v for k, v in filters.items() if v}),
                "problems": list(dict.fromkeys(problem for _, problem in parts if problem)),
                "summary": summary[0],
                "vlog_count": vlog_count if vlogs[0] is not None else None,
                "emotion_chart": emotion_distribution(summary[0]["emotions"])
                if summary[0]
                else None,
                "timeline_chart": intensity_over_time(timeline[0] or []),
                "rows": rows,
                "people_next": people[0]["next_cursor"] if people[0] else None,
                "vlogs": vlogs_response.json() if vlogs_response else [],
                "vlogs_next": vlogs_response.headers.get("x-next-cursor")
                if vlogs_response
                else None,
                "studies": visible,
                "zone": zone,
                "local": lambda value: local_time(value, zone),
                "size": human_bytes,
                "formats": ("csv", "parquet", "json", "ndjson"),
                "compliance": compliance,
                "stopped": stopped(compliance),
                "heatmap": heatmap(
                    compliance, days, len({p.study_id for p in compliance.participants}) > 1
                ),
                "heatmap_days": days,
                "rates": {p.user_id: p.rate for p in reversed(compliance.participants)},
                "cockpit_query": urlencode(who),
            },
        )

    @get(
        "/export/map",
        operation_id="mapPage",
        media_type=MediaType.HTML,
        include_in_schema=False,
        opt={ANY_QUERY: True},
    )
    async def map_page(
        self, request: Request, filters: ExportFilters, days: MapDays = MAP_DAYS
    ) -> Template:
        """One participant's GPS track on a map, a colour per local day: their newest
        `days` days with fixes (all of them with 0, or the From/Until filters' days)."""
        user_id = filters["user_id"]
        if not user_id:
            raise field_error("user_id", "name the participant whose track to show")
        api = _api(request)
        settings: GatewaySettings = request.app.state.settings
        studies, problem = await section(api.json("admin", "/api/studies"))
        zone = page_time_zone(studies or [], filters["study_id"], settings.display_timezone)
        tiles = None
        if settings.map_tiles:
            tiles = {"url": settings.map_tiles, "attribution": settings.map_attribution}
        wanted = {k: v for k, v in filters.items() if v}
        if days and not (filters["since"] or filters["until"]):
            newest = await api.json("ingest", "/api/gps", {**wanted, "limit": 1})
            if newest:
                wanted["since"] = _days_before(newest[0]["timestamp"], days, zone)
        track, drawn = await read_track(api.plain_records("gps", wanted), user_id, zone, tiles)
        back = {k: v for k, v in filters.items() if v and k != "user_id"}
        here = {k: v for k, v in filters.items() if v and k not in ("since", "until")}
        return page(
            request,
            "map.html.j2",
            {
                "track": track,
                "track_data": as_script_data(track),
                "fallback": fallback_svg(drawn),
                "problems": [problem] if problem else [],
                "zone": zone,
                "local": lambda value: local_time(value, zone),
                "back": urlencode(back),
                "spans": [
                    (label, urlencode({**here, "days": n}), n == days and not filters["since"])
                    for label, n in MAP_SPANS
                ],
            },
        )

    @get(
        "/api/export/all",
        operation_id="exportAll",
        summary="The seed's export of everything",
        opt={ALSO_SERVED_AS: {"application/json": {"type": "object"}}},
    )
    async def export_all(self, request: Request, filters: ExportFilters) -> Stream:
        pieces = await _started(export_all(_api(request), filters))
        return _attachment(f"emogo-all-{_stamp()}.json", "application/json", pieces)

    @get(
        "/api/export/everything.zip",
        operation_id="exportZip",
        summary="Every file and video",
        opt={ALSO_SERVED_AS: {"application/zip": BINARY}},
    )
    async def export_zip(self, request: Request, filters: ExportFilters) -> Stream:
        settings: GatewaySettings = request.app.state.settings
        pieces = await _in_turn(request, export_zip(_api(request), filters, settings.temp_dir))
        return _attachment(f"emogo-export-{_stamp()}.zip", "application/zip", pieces)

    @get(
        "/api/export/codebook.json",
        operation_id="exportCodebook",
        summary="What every column of every export means: a JSON Schema per kind",
    )
    async def codebook_json(self) -> Response[dict[str, Any]]:
        return Response(codebook_documents.codebook(), headers=_named("emogo-codebook.json"))

    @get(
        "/api/export/codebook.csv",
        operation_id="exportCodebookCsv",
        summary="The codebook as a table: variable, kind, type, unit, description, ...",
        opt={ALSO_SERVED_AS: {"text/csv": TEXT}},
    )
    async def codebook_csv(self) -> Response[bytes]:
        return Response(
            codebook_documents.codebook_csv(),
            media_type=MEDIA_TYPES["csv"],
            headers=_named("emogo-codebook.csv"),
        )

    @get(
        "/api/export/{name:str}",
        operation_id="exportRecords",
        summary="One kind of record, or the participant-day table, as csv, json, ndjson or "
        "parquet: sentiments.csv, gps.parquet, daily.csv, ...",
        opt={
            ALSO_SERVED_AS: {
                "text/csv": TEXT,
                "application/json": {"type": "array", "items": {"type": "object"}},
                "application/x-ndjson": TEXT,
                "application/vnd.apache.parquet": BINARY,
            }
        },
    )
    async def export_records(
        self, request: Request, name: FromPath[str], filters: ExportFilters
    ) -> Stream:
        match = EXPORT_NAME.match(name)
        if match is None:
            raise NotFound(
                f"No export {name!r}: ask for sentiments, gps, vlogs or daily as .csv, .json, "
                ".ndjson or .parquet (or codebook.json, codebook.csv)"
            )
        kind_name, format_name = match.groups()
        kind = codebook.KINDS[kind_name]
        made = await export_file(_api(request), kind_name, format_name, filters)
        pieces = await (_in_turn(request, made) if format_name == "parquet" else _started(made))
        # The schema version is in the file's name, so it stays with the file.
        name = f"emogo-{kind_name}-v{kind.version}-{_stamp()}.{format_name}"
        return _attachment(
            name, MEDIA_TYPES[format_name], pieces, **{"X-EmoGo-Schema": kind.schema_id}
        )


def _named(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


class ComplianceController(Controller):
    """Who is reporting, against what each study expects (services.gateway.compliance)."""

    path = "/api/telemetry"
    tags = ["compliance"]
    guards = [requires(*READERS)]
    dependencies = {"filters": Provide(provide_compliance_filters)}

    async def _report(self, request: Request, filters: dict[str, Any]) -> ComplianceReport:
        settings: GatewaySettings = request.app.state.settings
        return await read_report(_api(request), filters, utc_now(), settings.display_timezone)

    @get(
        "/compliance",
        operation_id="compliance",
        summary="Per participant: what arrived per local day, rates against the study's "
        "expectations, and who stopped reporting (first)",
    )
    async def compliance(self, request: Request, filters: ExportFilters) -> ComplianceReport:
        return await self._report(request, filters)

    @get(
        "/compliance.csv",
        operation_id="complianceCsv",
        summary="The compliance report, one row per participant",
        media_type="text/csv",
        opt={ALSO_SERVED_AS: {"text/csv": TEXT}},
    )
    async def compliance_csv(self, request: Request, filters: ExportFilters) -> Response[bytes]:
        body = as_csv(await self._report(request, filters))
        return Response(
            body,
            media_type=MEDIA_TYPES["csv"],
            headers={
                "Content-Disposition": f'attachment; filename="emogo-compliance-{_stamp()}.csv"',
                "X-Content-Type-Options": "nosniff",
            },
        )
