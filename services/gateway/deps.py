"""What the gateway's handlers are given, registered once on the app: its settings, the
services' API read with the caller's own credential, the turns large exports take, and
the filters the page, the exports and the compliance report share.

Handlers declare these by name and type (`api: ServiceApi`, `settings: GatewaySettings`);
nothing reaches a handler through `request.app.state`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from services.common.research.auth import is_viewer
from services.common.research.filters import (
    InstantFilter,
    ParticipantFilter,
    StudyFilter,
    time_span,
)
from services.common.web.given import Given, from_state
from services.gateway.exports.turns import ExportTurns
from services.gateway.proxy.relay import ReverseProxy
from services.gateway.proxy.upstream import ServiceApi
from services.gateway.settings import GatewaySettings

# What handlers declare, by these names: `filters: Filters`, `api: Api`, ...
Filters = NamedDependency[dict[str, Any]]
Api = Given[ServiceApi]
Settings = Given[GatewaySettings]
Proxy = Given[ReverseProxy]
Turns = Given[ExportTurns]


async def provide_api(
    request: Request[Any, Any, Any], proxy: Proxy, settings: Settings
) -> ServiceApi:
    """The services' API as the caller may read it: every request made with the
    caller's own credential, so the services decide what it covers."""
    authorization = request.headers.get("authorization")
    return ServiceApi(
        session=proxy.session,
        upstreams=proxy.upstreams,
        authorization=authorization,
        request_id=request.scope.get("state", {}).get("request_id"),
        fallback_zone=settings.display_timezone,
        viewer=is_viewer(authorization, settings.credentials),
    )


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


DEPENDENCIES = {
    "settings": from_state("settings"),
    "proxy": from_state("proxy"),
    "turns": from_state("export_turns"),
    "api": Provide(provide_api),
}
