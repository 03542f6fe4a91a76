"""Builds a service's Litestar app the same way for every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from beanie import Document
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.template import TemplateConfig
from litestar.types import ControllerRouterHandler

from services.common.database import mongo_lifespan
from services.common.errors import EXCEPTION_HANDLERS
from services.common.health import HealthController
from services.common.logs import RequestContextMiddleware, configure_logging
from services.common.settings import ServiceSettings
from services.common.validation import reject_unknown_query_parameters

API_VERSION = "0.1.0"


def openapi_config(service: str, title: str, description: str) -> OpenAPIConfig:
    """Each service documents itself under `/docs/<service>`, a path the gateway
    forwards unchanged, so the docs UI works both directly and through the gateway."""
    return OpenAPIConfig(
        title=title,
        version=API_VERSION,
        description=description,
        path=f"/docs/{service}",
        render_plugins=[SwaggerRenderPlugin(path="/")],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
                "basic": SecurityScheme(type="http", scheme="basic"),
            }
        ),
        security=[{"bearer": []}, {"basic": []}],
    )


def build_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    route_handlers: Sequence[ControllerRouterHandler],
    documents: Sequence[type[Document]] | None,
    include_health: bool = True,
    extra_lifespan: Sequence = (),
    template_config: TemplateConfig | None = None,
    prepare_database: Callable[[], Awaitable[str]] | None = None,
) -> Litestar:
    """The app every service's `create_app()` returns.

    `documents=None` means the service has no database (the gateway)."""
    configure_logging(
        settings.service,
        settings.log_dir,
        settings.log_level,
        secrets=[*settings.credentials.by_role().values(), settings.mongodb_admin_password or ""],
    )
    lifespan = [] if documents is None else [mongo_lifespan(settings, documents, prepare_database)]
    handlers = [*([HealthController] if include_health else []), *route_handlers]
    app = Litestar(
        route_handlers=handlers,
        state=State({"settings": settings}),
        lifespan=[*lifespan, *extra_lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        guards=[reject_unknown_query_parameters],
        openapi_config=openapi_config(settings.service, title, description),
        request_max_body_size=settings.max_json_body_bytes,
        template_config=template_config,
        logging_config=None,
        debug=False,
    )
    # Wrap the whole ASGI handler, not each route, so that requests which match no
    # route (404, 405) also get a request id and an access line.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    return app
