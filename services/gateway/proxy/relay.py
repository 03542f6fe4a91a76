"""The gateway's work: forwarding requests to the services and checking their health.

The proxy streams both ways: request bodies go upstream as they arrive and
responses come down as they are read, so a video of hundreds of MB passes in
constant memory. It speaks raw ASGI on the client side for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
import anyio
from litestar.types import (
    HTTPReceiveMessage,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    Scope,
    Send,
)
from multidict import CIMultiDict
from yarl import URL

from services.common.research.auth import CHALLENGE, principal_from_header
from services.common.research.tokens import (
    TokenKind,
    issued_token_in,
)
from services.common.web.errors import (
    AppError,
    BadGateway,
    GatewayTimeout,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from services.gateway.proxy.balancing import Replicas, never_reached_service
from services.gateway.proxy.coalescing import Answer, PostCoalescer, relayable
from services.gateway.proxy.forwarding import (
    REPLACED_ON_RESPONSE,
    declared_length,
    end_to_end_headers,
    has_body,
    header_of,
    is_internal,
    upstream_request_headers,
)
from services.gateway.proxy.upstream import RETRY_SECONDS
from services.gateway.settings import GatewaySettings

logger = logging.getLogger("emogo.gateway")

# The fixed route table: path prefixes (whole segments) and the service that owns them.
# Each service documents itself under /docs/<service>, forwarded unchanged.
ROUTES: dict[str, tuple[str, ...]] = {
    "ingest": ("/api/sentiments", "/api/gps", "/api/telemetry", "/docs/ingest"),
    "media": ("/api/vlogs", "/docs/media"),
    "admin": (
        "/api/v1",
        "/api/studies",
        "/api/audit",
        "/api/deletion-receipts",
        "/api/enrol",
        "/api/viewer-tokens",
        "/tail_log",
        "/dowload_log_file",  # the seed's spelling, kept for its clients
        "/download_log_file",
        "/docs/admin",
    ),
}

# Responses up to this size are relayed in one piece.
SMALL_BODY_BYTES = 1024 * 1024
# Request bodies up to this size are read whole before a service is contacted.
BUFFERED_BODY_BYTES = 1024 * 1024
# Idle upstream connections are dropped after this, before the service's own
# keep-alive timeout (uvicorn's default, 5 s) closes them under a request.
UPSTREAM_KEEPALIVE_SECONDS = 4.0


def upstream_failure(service: str, exc: Exception) -> AppError:
    """What a failed request to a service means for the client: down (503), too slow
    (504), or an answer that is not valid HTTP (502)."""
    detail = {"service": service}
    if never_reached_service(exc):
        return ServiceUnavailable(
            f"The {service} service is unavailable",
            extra=detail,
            headers={"Retry-After": str(RETRY_SECONDS)},
        )
    if isinstance(exc, TimeoutError):
        return GatewayTimeout(f"The {service} service did not answer in time", extra=detail)
    return BadGateway(f"The {service} service gave no valid answer", extra=detail)


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def _whole_body(receive: Receive) -> bytes:
    # A loop rather than joining `_request_body`: for a small post, whose body is one
    # message, the async generator showed in 3 % of the gateway's profile samples.
    chunks = []
    while True:
        message = cast("HTTPReceiveMessage", await receive())  # an HTTP route's
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = cast("HTTPReceiveMessage", await receive())  # an HTTP route's
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


# What a request whose body was read whole is sent under: no write deadline to keep.
_NO_DEADLINE = contextlib.nullcontext()


async def _paced(
    pieces: AsyncIterator[bytes], deadline: asyncio.Timeout, seconds: float
) -> AsyncIterator[bytes]:
    """A streamed body whose every piece must be taken by the service within `seconds`
    (the write timeout); the time its own client takes to send is not counted."""
    loop = asyncio.get_running_loop()
    async for piece in pieces:
        deadline.reschedule(loop.time() + seconds)
        yield piece
        deadline.reschedule(None)


class ReverseProxy:
    """Forwards ASGI requests to the services over one shared aiohttp session.

    aiohttp rather than httpx: its parser and connection pool are compiled, and a
    relayed request costs the gateway about a tenth of the CPU
    (bench/cpu_cost.py)."""

    def __init__(self, settings: GatewaySettings, session: aiohttp.ClientSession) -> None:
        self.upstreams = {name: Replicas(urls) for name, urls in settings.upstreams.items()}
        self.health_timeout = aiohttp.ClientTimeout(total=settings.health_timeout)
        self.write_timeout = settings.write_timeout
        self.credentials = settings.credentials
        self.session = session
        self.coalescer = (
            PostCoalescer(self.exchange, settings.relay_linger, settings.service_token)
            if settings.relay_together
            else None
        )

    @staticmethod
    def make_session(settings: GatewaySettings) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=settings.max_upstream_connections,
            limit_per_host=0,
            # Shorter than the services' own keep-alive (uvicorn closes an idle
            # connection after 5 s), so a request never goes out on a connection the
            # service is closing.
            keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
            use_dns_cache=True,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                # `connect` includes the wait for a free connection of the pool.
                connect=settings.pool_timeout + settings.connect_timeout,
                sock_connect=settings.connect_timeout,
                sock_read=settings.read_timeout,
            ),
            # Relay what the client sent, nothing more: no added headers, bodies
            # passed on as they are (compressed or not), no cookies kept.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def forward(self, service: str, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id", "")
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = target = raw_path.split(b"?", 1)[0].decode("latin-1")
        query = scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        method = cast("HTTPScope", scope)["method"]  # the gateway mounts HTTP routes only
        if is_internal(path):
            raise NotFound(f"No route for {method} {path[:200]}")
        try:
            content = await self._body_to_forward(scope, receive)
        except ClientGone:
            logger.info("client went away while sending", extra={"service": service})
            return
        headers = upstream_request_headers(scope, request_id)
        if (
            self.coalescer is not None
            and method == "POST"
            and isinstance(content, bytes)
            and relayable(path, query, headers, content)
        ):
            answer = await self.coalescer.post(service, path, headers, content)
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": answer.status,
                "headers": answer.headers,
            }
            await send(start)
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
            return
        # A streamed body can be sent once only; a body read whole can be sent again.
        replayable = content is None or isinstance(content, bytes)
        try:
            async with asyncio.timeout(None) if not replayable else _NO_DEADLINE as deadline:
                body = content
                if content is not None and not isinstance(content, bytes) and deadline:
                    body = _paced(content, deadline, self.write_timeout)
                response = await self._request(service, method, target, headers, body, replayable)
        except ClientGone:
            logger.info("client went away while sending", extra={"service": service})
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(exc.__cause__, ClientGone):
                # aiohttp sends a streamed body from a task of its own and wraps
                # what stopped it.
                logger.info("client went away while sending", extra={"service": service})
                return
            self._log_failure(service, exc, retried=False)
            raise upstream_failure(service, exc) from None
        try:
            await self._relay(service, response, receive, send)
        finally:
            response.release()

    async def exchange(
        self, service: str, target: str, headers: CIMultiDict[str], body: bytes
    ) -> Answer:
        """One small POST to a service and its whole answer, failures as for `forward`."""
        try:
            response = await self._request(service, "POST", target, headers, body, True)
            try:
                content = await response.read()
            finally:
                response.release()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log_failure(service, exc, retried=False)
            raise upstream_failure(service, exc) from None
        return Answer(
            status=response.status,
            headers=end_to_end_headers(response.raw_headers, REPLACED_ON_RESPONSE),
            body=content,
        )

    async def _request(
        self,
        service: str,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
        replayable: bool,
    ) -> aiohttp.ClientResponse:
        """The service's answer, from the next replica that takes the request
        (services.gateway.proxy.balancing says when another replica may be tried)."""

        async def attempt(base: str) -> aiohttp.ClientResponse:
            url = URL(base + target, encoded=True)
            return await self.session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            )

        return await self.upstreams[service].send(
            method,
            attempt,
            replayable=replayable,
            on_retry=lambda exc: self._log_failure(service, exc, retried=True),
        )

    @staticmethod
    def _log_failure(service: str, exc: Exception, retried: bool) -> None:
        logger.warning(
            "upstream request failed",
            extra={
                "service": service,
                "error": type(exc).__name__,
                "status": "retried" if retried else upstream_failure(service, exc).status_code,
            },
        )

    async def _body_to_forward(
        self, scope: Scope, receive: Receive
    ) -> bytes | AsyncIterator[bytes] | None:
        """What goes upstream as the body. An upstream connection is held only by a
        request whose body is here: a small body is read whole first (its client's
        connection has a minimum rate, services.common.runtime.server), so clients that send
        slowly hold nothing but their own connection. Only a request with a role
        credential may stream a larger body, or one of unknown length, through."""
        if not has_body(scope):
            return None
        length = declared_length(scope)
        if length is not None and length <= BUFFERED_BODY_BYTES:
            return await _whole_body(receive)
        header = (header_of(scope, b"authorization") or b"").decode("latin-1")
        # A participant's token is checked by the service (the gateway has no
        # database) before it reads any of the body, so a forged one holds an
        # upstream connection only until the service answers 401.
        participant = issued_token_in(header, TokenKind.PARTICIPANT)
        if principal_from_header(header, self.credentials) is None and participant is None:
            raise Unauthorized(
                f"A body larger than {BUFFERED_BODY_BYTES} bytes, or of unknown length, "
                "needs a role or participant credential: send Authorization: Bearer <token>",
                headers=CHALLENGE,
            )
        return _request_body(receive)

    async def _relay(
        self, service: str, response: aiohttp.ClientResponse, receive: Receive, send: Send
    ) -> None:
        """Streams the upstream response down; stops (and so closes upstream) when the
        client goes away."""
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": end_to_end_headers(response.raw_headers, REPLACED_ON_RESPONSE),
            }
        )
        length = response.content_length
        if length is not None and length <= SMALL_BODY_BYTES:
            # Small answers (most API calls) go in one piece: no need to watch for a
            # disconnect, which would cost a task per request.
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._broken(service, response, exc)
                return
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        completed = False
        async with anyio.create_task_group() as tasks:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(watch_disconnect)
            try:
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._broken(service, response, exc)
            tasks.cancel_scope.cancel()
        if not completed:
            # The upstream connection is not reusable with part of a body unread.
            response.close()
            logger.info("response not completed", extra={"service": service})

    @staticmethod
    def _broken(service: str, response: aiohttp.ClientResponse, exc: Exception) -> None:
        """Headers are gone already: the body ends without completing, so the client
        sees a broken transfer rather than a silently short file."""
        response.close()
        logger.warning(
            "upstream stream broke", extra={"service": service, "error": type(exc).__name__}
        )
