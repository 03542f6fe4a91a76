"""Builds a service's Litestar app the same way for every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

from beanie import Document
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.template import TemplateConfig
from litestar.types import ASGIApp, ControllerRouterHandler, Message, Receive, Scope, Send

from services.common.runtime.database import mongo_lifespan
from services.common.runtime.heap import settled_heap
from services.common.runtime.logs import RequestContextMiddleware, configure_logging
from services.common.runtime.settings import ServiceSettings
from services.common.web.api_docs import openapi_config, swagger_assets
from services.common.web.errors import EXCEPTION_HANDLERS
from services.common.web.health import HealthController
from services.common.web.openapi import document_errors
from services.common.web.validation import reject_unknown_query_parameters

# What every operation of a service with a database answers when the database fails.
DATABASE_ERRORS = (503,)


# What browser clients send and may read: the credential, the body's type, the
# request id; and the headers of paging, retries, downloads and ranges.
# And those of resumable uploads (tus 1.0.0, services.media.tus).
CORS_REQUEST_HEADERS = [
    "authorization",
    "content-type",
    "accept",
    "accept-language",
    "x-request-id",
    "tus-resumable",
    "upload-length",
    "upload-metadata",
    "upload-offset",
    "upload-checksum",
    "x-http-method-override",
]
CORS_EXPOSED_HEADERS = [
    "x-request-id",
    "link",
    "x-next-cursor",
    "retry-after",
    "content-disposition",
    "content-range",
    "accept-ranges",
    "etag",
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "x-vlog-id",
    "x-vlog-duplicate",
]


def cors_config(origins: tuple[str, ...]) -> CORSConfig | None:
    """Cross-origin access for the listed web origins (none: same origin only).
    Credentials are bearer tokens, not cookies, so no `Allow-Credentials`."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=600,
    )


class MethodSemantics:
    """What RFC 9110 asks of two methods and Litestar does not do. Other requests pass
    straight through, with no hook on their hot path.

    - OPTIONS: Litestar answers with an `Allow` of the methods of the first handler
      registered for a path, not all of them (§10.2.1 asks for every method the
      resource supports, HEAD included where GET is).
    - HEAD: every general-purpose server supports it, the GET of the same target
      without its content (§9.1, §9.3.2); uptime monitors and link checkers send it.
      Litestar answers HEAD only where a handler is declared for it (tus declares its
      own) and 405 elsewhere. Such a HEAD is answered as the GET: the same status and
      headers (Content-Length included) and no content, whose making stops at its
      first piece (the server then tells the app that the client is gone)."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_methods: dict[str, set[str]],
        extra_headers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.app = app
        self.allowed_methods = allowed_methods
        # Headers some paths add to their OPTIONS answer (a protocol's discovery, such
        # as tus's Tus-Version): Litestar keeps its own OPTIONS handler on a path that
        # has others, so a handler of ours would never be called.
        self.extra_headers = {
            path: [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            for path, headers in (extra_headers or {}).items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"] if scope["type"] == ScopeType.HTTP else None
        if method == "OPTIONS":
            await self._options(scope, receive, send)
        elif method == "HEAD":
            await self._head(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_complete_allow(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Litestar's router has named the handler in the scope by now.
                handler = scope.get("route_handler")
                path = next(iter(handler.paths), "") if handler else ""
                methods = self.allowed_methods.get(path)
                if methods:
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                    ]
                    headers.append((b"allow", ", ".join(sorted(methods)).encode()))
                    message["headers"] = headers + self.extra_headers.get(path, [])
            await send(message)

        await self.app(scope, receive, send_complete_allow)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The scope as it came: routing rewrites the path of a mount and Litestar keeps
        # the progress of a response in the state, both in place.
        as_received = {**scope, "state": dict(scope.get("state", {}))}
        refused = False

        async def unless_refused(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start":
                refused = message["status"] == 405
            if not refused:
                await send(message)

        await self.app(scope, receive, unless_refused)
        if not refused:
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if ended:
                return
            if message["type"] == "http.response.body":
                ended = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # A copy: the server reads the method from its own scope to send no content.
        await self.app(cast("Scope", {**as_received, "method": "GET"}), receive, headers_only)


def build_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    route_handlers: Sequence[ControllerRouterHandler],
    documents: Sequence[type[Document]] | None,
    state: Mapping[str, Any] | None = None,
    include_health: bool = True,
    extra_lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
    template_config: TemplateConfig[Any] | None = None,
    prepare_database: Callable[[], Awaitable[str]] | None = None,
    dependency_errors: tuple[int, ...] = (),
    options_headers: Mapping[str, Mapping[str, str]] | None = None,
    dependencies: Mapping[str, Provide] | None = None,
    inner_middleware: Callable[[ASGIApp, State], ASGIApp] | None = None,
) -> Litestar:
    """The app every service's `create_app()` returns.

    `documents=None` means the service has no database (the gateway); then
    `dependency_errors` are what its operations answer when what they need fails.
    `state` starts the app's state beside `settings` (the research domain's caches,
    services.common.research.wiring).
    `inner_middleware` wraps the app inside the request context (the request id is
    known) and outside the router (it sees every answer, 404s included)."""
    configure_logging(
        settings.service,
        settings.log_dir,
        settings.log_level,
        console_level=settings.console_log_level,
        secrets=[
            *settings.credentials.by_role().values(),
            settings.mongodb_admin_password or "",
            getattr(settings, "service_token", ""),
        ],
    )
    lifespan = []
    app_state = State({**(state or {}), "settings": settings})
    if documents is not None:
        lifespan.append(mongo_lifespan(settings, list(dict.fromkeys(documents)), prepare_database))
    handlers = [
        *([HealthController] if include_health else []),
        swagger_assets(settings.service),
        *route_handlers,
    ]
    allowed_methods: dict[str, set[str]] = {}
    app = Litestar(
        cors_config=cors_config(settings.cors_origins),
        route_handlers=handlers,
        dependencies=dict(dependencies or {}),
        state=app_state,
        lifespan=[*lifespan, *extra_lifespan, settled_heap],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=reject_unknown_query_parameters,
        openapi_config=openapi_config(settings.service, title, description),
        request_max_body_size=settings.max_json_body_bytes,
        template_config=template_config,
        # Answers hold participant data: no browser or proxy keeps a copy (OWASP ASVS
        # 8.2.1), on a lab's shared computer least of all. Responses that may be kept
        # say so themselves (a vlog's bytes, whose sha256 never changes; static files).
        cache_control=CacheControlHeader(no_store=True),
        logging_config=None,
        debug=False,
    )
    document_errors(app, DATABASE_ERRORS if documents is not None else dependency_errors)
    allowed_methods.update(
        (route.path, route.methods | ({"HEAD"} if "GET" in route.methods else set()))
        for route in app.routes
        if isinstance(route, HTTPRoute)
    )
    # Wrap the whole ASGI handler, not each route, so that requests which match no
    # route (404, 405) also get a request id and an access line.
    handler: ASGIApp = MethodSemantics(app.asgi_handler, allowed_methods, options_headers)
    if inner_middleware is not None:
        handler = inner_middleware(handler, app.state)
    app.asgi_handler = RequestContextMiddleware(handler)
    return app
