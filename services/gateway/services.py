"""The gateway's work: forwarding requests to the services and checking their health.

The proxy streams both ways: request bodies go upstream as they arrive and
responses come down as they are read, so a video of hundreds of MB passes in
constant memory. It speaks raw ASGI on the client side for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import time
from collections.abc import AsyncIterator, Iterable
from urllib.parse import unquote

import aiohttp
import anyio
import msgspec
from litestar.types import Receive, Scope, Send
from multidict import CIMultiDict
from yarl import URL

from services.common.auth import CHALLENGE, principal_from_header
from services.common.errors import (
    AppError,
    BadGateway,
    GatewayTimeout,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from services.common.schemas import utc_now
from services.common.tokens import (
    TokenKind,
    issued_token_in,
)
from services.common.validation import ascii_integer
from services.gateway.balancing import Replicas, never_reached_service
from services.gateway.coalescing import Answer, PostCoalescer, relayable
from services.gateway.schemas import GatewayHealth, ServiceHealth
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import RETRY_SECONDS

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

# Paths of the services that only the gateway itself calls: never forwarded from outside.
INTERNAL_PATHS = frozenset({"/api/audit/entries"})


def is_internal(raw_path: str) -> bool:
    """Whether a request path, however spelled (escapes, dots, doubled or trailing
    slashes), names an internal path."""
    decoded = posixpath.normpath("/" + unquote(raw_path).lstrip("/"))
    return decoded.lower() in INTERNAL_PATHS


# RFC 9110 §7.6.1: connection-specific headers a proxy must not forward.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the gateway itself (or by the request-id middleware) rather than copied.
_REPLACED_ON_REQUEST = frozenset(
    {b"host", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)
_REPLACED_ON_RESPONSE = frozenset({b"x-request-id", b"server", b"date"})
# Responses up to this size are relayed in one piece.
SMALL_BODY_BYTES = 1024 * 1024
# Request bodies up to this size are read whole before a service is contacted.
BUFFERED_BODY_BYTES = 1024 * 1024
# Idle upstream connections are dropped after this, before the service's own
# keep-alive timeout (uvicorn's default, 5 s) closes them under a request.
UPSTREAM_KEEPALIVE_SECONDS = 4.0


def end_to_end_headers(
    headers: Iterable[tuple[bytes, bytes]], also_drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """Headers without hop-by-hop ones, including any that `Connection` names."""
    headers = [(name.lower(), value) for name, value in headers]
    dropped = HOP_BY_HOP | also_drop if also_drop else HOP_BY_HOP
    for name, value in headers:
        if name == b"connection":
            dropped = dropped | {token.strip().lower() for token in value.split(b",")}
    return [(name, value) for name, value in headers if name not in dropped]


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name.lower() == wanted:
            return value
    return None


def upstream_request_headers(scope: Scope, request_id: str) -> CIMultiDict[str]:
    """The client's end-to-end headers, and the request id and forwarding chain that
    the gateway sets, as the upstream request takes them."""
    headers: CIMultiDict[str] = CIMultiDict()
    prior = host = None
    for name, value in end_to_end_headers(scope["headers"]):
        if name in _REPLACED_ON_REQUEST:
            if name == b"x-forwarded-for" and prior is None:
                prior = value
            elif name == b"host" and host is None:
                host = value
            continue
        headers.add(name.decode("latin-1"), value.decode("latin-1"))
    client = scope.get("client")
    client_ip = client[0] if client else "unknown"
    headers["x-request-id"] = request_id
    headers["x-forwarded-for"] = f"{prior.decode('latin-1')}, {client_ip}" if prior else client_ip
    headers["x-forwarded-proto"] = scope.get("scheme", "http")
    if host:
        headers["x-forwarded-host"] = host.decode("latin-1")
    return headers


def _has_body(scope: Scope) -> bool:
    return _header(scope, b"content-length") not in (None, b"0") or (
        _header(scope, b"transfer-encoding") is not None
    )


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    return ascii_integer(value.decode("latin-1")) if value is not None else None


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
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
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
            PostCoalescer(self.exchange, settings.relay_linger) if settings.relay_together else None
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
        method = scope["method"]
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
            await send(
                {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
            )
            await send({"type": "http.response.body", "body": answer.body})
            return
        # A streamed body can be sent once only; a body read whole can be sent again.
        replayable = content is None or isinstance(content, bytes)
        try:
            async with asyncio.timeout(None) if not replayable else _NO_DEADLINE as deadline:
                body = content
                if not replayable:
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
            headers=end_to_end_headers(response.raw_headers, _REPLACED_ON_RESPONSE),
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
        (services.gateway.balancing says when another replica may be tried)."""

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
        connection has a minimum rate, services.common.server), so clients that send
        slowly hold nothing but their own connection. Only a request with a role
        credential may stream a larger body, or one of unknown length, through."""
        if not _has_body(scope):
            return None
        length = _declared_length(scope)
        if length is not None and length <= BUFFERED_BODY_BYTES:
            return await _whole_body(receive)
        header = (_header(scope, b"authorization") or b"").decode("latin-1")
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
                "headers": end_to_end_headers(response.raw_headers, _REPLACED_ON_RESPONSE),
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
            await send({"type": "http.response.body", "body": body})
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

    async def service_health(self, service: str) -> ServiceHealth:
        """Up when any replica is ready; `replicas_up` says how many of how many are."""
        replicas = self.upstreams[service]
        results = await asyncio.gather(*(self._replica_health(url) for url in replicas.urls))
        for url, result in zip(replicas.urls, results, strict=True):
            if result.status == "up":
                replicas.answered(url)
            else:
                replicas.failed(url)
        up = [result for result in results if result.status == "up"]
        best = up[0] if up else results[0]
        if len(results) == 1:
            return best
        return ServiceHealth(
            status=best.status,
            database=best.database,
            latency_ms=best.latency_ms,
            error=best.error,
            replicas=len(results),
            replicas_up=len(up),
        )

    async def _replica_health(self, base: str) -> ServiceHealth:
        started = time.perf_counter()
        try:
            async with self.session.get(f"{base}/ready", timeout=self.health_timeout) as answer:
                status = answer.status
                body = msgspec.json.decode(await answer.read())
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            return ServiceHealth(status="down", database="unknown", error=type(exc).__name__)
        latency = round((time.perf_counter() - started) * 1000, 2)
        database = body.get("database", "unknown") if isinstance(body, dict) else "unknown"
        return ServiceHealth(
            status="up" if status == 200 else "down",
            database=database,
            latency_ms=latency,
        )

    async def health(self) -> GatewayHealth:
        names = list(self.upstreams)
        results = await asyncio.gather(*(self.service_health(n) for n in names))
        services = dict(zip(names, results, strict=True))
        all_up = all(s.status == "up" for s in results)
        connected = all(s.database == "connected" for s in results)
        return GatewayHealth(
            status="healthy" if all_up and connected else "unhealthy",
            database="connected" if connected else "disconnected",
            timestamp=utc_now(),
            services=services,
        )
