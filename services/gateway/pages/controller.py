"""The gateway's pages: the home page, the docs index, the export page TAs open and a
participant's map. Each is read from the services with the caller's own credential."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, MediaType, Request, get
from litestar.di import Provide
from litestar.params import QueryParameter
from litestar.response import Template

from services.common.research.auth import READERS, requires
from services.common.research.localdays import local_midnight
from services.common.web.errors import field_error
from services.common.web.validation import ANY_QUERY
from services.gateway.deps import Api, Filters, Settings, provide_export_filters
from services.gateway.pages.export_page import (
    build_export_page,
    local_time,
    page_time_zone,
    section,
)
from services.gateway.pages.headers import page
from services.gateway.pages.maps import as_script_data, fallback_svg, read_track

DOCS = (
    ("gateway", "Gateway: health, exports"),
    ("ingest", "Ingest: sentiments and GPS fixes"),
    ("media", "Media: vlogs and videos"),
    ("admin", "Admin: users, characters, configs, logs"),
)
# A map shows a participant's newest two weeks unless asked for more: a semester of
# fixes every ten minutes is 17,000 points, most of a second to read on the embedded
# database.
MAP_DAYS = 14
MAP_SPANS = (("two weeks", 14), ("two months", 60), ("every day", 0))
MapDays = Annotated[
    int,
    QueryParameter(ge=0, le=3660, description="The newest days with fixes shown; 0: all."),
]
VlogsCursor = Annotated[str | None, QueryParameter(max_length=200, description="Vlog page.")]
PeopleCursor = Annotated[str | None, QueryParameter(max_length=200, description="Table page.")]


def _days_before(last: str, days: int, zone: str) -> str:
    """The start of the local day `days - 1` days before the one of `last`, as UTC."""
    local = ZoneInfo(zone)
    day = datetime.fromisoformat(last).astimezone(local).date() - timedelta(days=days - 1)
    return local_midnight(day, local).isoformat() + "Z"


class PagesController(Controller):
    path = "/"
    tags = ["pages"]
    include_in_schema = False

    @get("/", operation_id="home", media_type=MediaType.HTML, opt={ANY_QUERY: True})
    async def home(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "home.html.j2", {"docs": DOCS})

    @get("/docs", operation_id="docs_index", media_type=MediaType.HTML, opt={ANY_QUERY: True})
    async def docs_index(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "docs.html.j2", {"docs": DOCS})


class ExportPagesController(Controller):
    """The page TAs open, and a participant's map."""

    path = "/export"
    tags = ["export"]
    guards = [requires(*READERS)]
    dependencies = {"filters": Provide(provide_export_filters)}
    include_in_schema = False

    @get("/", operation_id="exportPage", media_type=MediaType.HTML, opt={ANY_QUERY: True})
    async def export_page(
        self,
        request: Request[Any, Any, Any],
        api: Api,
        settings: Settings,
        filters: Filters,
        vlogs_cursor: VlogsCursor = None,
        people_cursor: PeopleCursor = None,
    ) -> Template:
        context = await build_export_page(
            api, filters, settings.display_timezone, vlogs_cursor, people_cursor
        )
        return page(request, "export.html.j2", context)

    @get("/map", operation_id="mapPage", media_type=MediaType.HTML, opt={ANY_QUERY: True})
    async def map_page(
        self,
        request: Request[Any, Any, Any],
        api: Api,
        settings: Settings,
        filters: Filters,
        days: MapDays = MAP_DAYS,
    ) -> Template:
        """One participant's GPS track on a map, a colour per local day: their newest
        `days` days with fixes (all of them with 0, or the From/Until filters' days)."""
        user_id = filters["user_id"]
        if not user_id:
            raise field_error("user_id", "name the participant whose track to show")
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
