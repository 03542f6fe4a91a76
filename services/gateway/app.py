"""The gateway app: one public port in front of ingest, media and admin."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from xstatic.pkg import leaflet

from services.common.web.app import build_app
from services.common.web.openapi import GATEWAY_ERRORS
from services.common.web.validation import ANY_QUERY
from services.gateway.audit.auditing import AuditMiddleware
from services.gateway.audit.journal import AuditJournal
from services.gateway.audit.recorder import AuditRecorder, admin_sender
from services.gateway.deps import DEPENDENCIES
from services.gateway.exports.controller import ComplianceController, ExportController
from services.gateway.exports.turns import ExportTurns
from services.gateway.health import HealthController
from services.gateway.pages.controller import ExportPagesController, PagesController
from services.gateway.pages.headers import page_headers
from services.gateway.proxy.issued import IssuedTokensViaAdmin
from services.gateway.proxy.relay import ReverseProxy
from services.gateway.proxy.routes import PROXY_MOUNTS
from services.gateway.settings import GatewaySettings, load_settings

TEMPLATES = Path(__file__).parent / "templates"
# The pages' own scripts: files, so that the pages' policy allows no inline script.
STATIC = Path(__file__).parent / "static"
logger = logging.getLogger("emogo.gateway")


def create_app(settings: GatewaySettings | None = None) -> Litestar:
    settings = settings or load_settings()

    @asynccontextmanager
    async def upstream_client(app: Litestar) -> AsyncIterator[None]:
        async with ReverseProxy.make_session(settings) as session:
            app.state.proxy = proxy = ReverseProxy(settings, session)
            app.state.issued_tokens = IssuedTokensViaAdmin(proxy)
            if not settings.audit:
                logger.warning("EMOGO_AUDIT is off: reads of participant data are not recorded")
                yield
                return
            sender = admin_sender(session, proxy.upstreams["admin"].send, settings.service_token)
            journal = AuditJournal(settings.audit_journal_dir)
            app.state.audit = recorder = AuditRecorder(sender, journal)
            recorder.start()
            try:
                yield
            finally:
                # Every entry recorded is sent before the connections close.
                await recorder.stop()

    app = build_app(
        settings,
        title="EmoGo gateway",
        description="The public entry point: routes to the services, health, exports.",
        route_handlers=[
            HealthController,
            PagesController,
            ExportPagesController,
            ExportController,
            ComplianceController,
            create_static_files_router(
                path="/static/emogo",
                directories=[STATIC],
                name="emogo",
                include_in_schema=False,
                cache_control=CacheControlHeader(no_cache=True),  # kept, asked again each time
                opt={ANY_QUERY: True},
            ),
            create_static_files_router(
                path="/static/leaflet",
                directories=[Path(leaflet.BASE_DIR)],
                name="leaflet",
                include_in_schema=False,
                # The map's library, the same for everyone until the package changes.
                cache_control=CacheControlHeader(public=True, max_age=86400),
                opt={ANY_QUERY: True},
            ),
            *PROXY_MOUNTS,
        ],
        documents=None,
        include_health=False,
        extra_lifespan=[upstream_client],
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        dependencies=DEPENDENCIES,
        dependency_errors=GATEWAY_ERRORS,
        inner_middleware=AuditMiddleware,
    )
    app.state.page_headers = page_headers(settings.map_tiles)
    app.state.export_turns = ExportTurns(settings.heavy_exports, settings.export_wait_seconds)
    return app
