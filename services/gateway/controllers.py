"""HTTP handlers of the gateway: health, the docs index, and the proxy mounts."""

from __future__ import annotations

from litestar import Controller, MediaType, Request, Response, asgi, get
from litestar.handlers import ASGIRouteHandler
from litestar.response import Template
from litestar.types import Receive, Scope, Send

from services.common.schemas import Liveness, utc_now
from services.gateway.schemas import GatewayHealth
from services.gateway.services import ROUTES, ReverseProxy

DOCS = (
    ("gateway", "Gateway: health, exports"),
    ("ingest", "Ingest: sentiments and GPS fixes"),
    ("media", "Media: vlogs and videos"),
    ("admin", "Admin: users, characters, configs, logs"),
)


class HealthController(Controller):
    path = "/"
    tags = ["health"]

    @get("/health", operation_id="health", summary="Every service and the database")
    async def health(self, request: Request) -> Response[GatewayHealth]:
        proxy: ReverseProxy = request.app.state.proxy
        report = await proxy.health()
        return Response(report, status_code=200 if report.status == "healthy" else 503)

    @get("/ready", operation_id="ready", summary="Liveness of the gateway process itself")
    async def ready(self) -> Liveness:
        return Liveness(status="healthy", service="gateway", timestamp=utc_now())


class PagesController(Controller):
    path = "/"
    tags = ["pages"]
    include_in_schema = False

    @get("/", operation_id="home", media_type=MediaType.HTML)
    async def home(self) -> Template:
        return Template(template_name="home.html.j2", context={"docs": DOCS})

    @get("/docs", operation_id="docs_index", media_type=MediaType.HTML)
    async def docs_index(self) -> Template:
        return Template(template_name="docs.html.j2", context={"docs": DOCS})


def proxy_mount(service: str, prefixes: tuple[str, ...]) -> ASGIRouteHandler:
    """One mount per service: every path under its prefixes goes to it unchanged."""

    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        proxy: ReverseProxy = scope["litestar_app"].state.proxy
        await proxy.forward(service, scope, receive, send)

    forward.__name__ = f"proxy_{service}"
    return asgi(path=list(prefixes), is_mount=True, name=f"proxy_{service}")(forward)


PROXY_MOUNTS = [proxy_mount(service, prefixes) for service, prefixes in ROUTES.items()]
