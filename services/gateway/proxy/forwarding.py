"""What crosses the gateway with a request and its answer: the headers forwarded
(end to end, RFC 9110 §7.6.1) and those the gateway sets itself (the request id, the
forwarding chain), whether a request has a body and its declared length, and the
paths of the services that are never forwarded from outside. Pure functions over an
ASGI scope; the reverse proxy (services.gateway.proxy.relay) uses them."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from urllib.parse import unquote

from litestar.types import Scope
from multidict import CIMultiDict

from services.common.web.validation import ascii_integer

# Paths of the services that only the gateway itself calls, never forwarded from
# outside: the audit trail's appends, and posts relayed together
# (services.gateway.proxy.coalescing).
INTERNAL_PATHS = frozenset({"/api/audit/entries", "/api/sentiments/posts", "/api/gps/posts"})


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
REPLACED_ON_RESPONSE = frozenset({b"x-request-id", b"server", b"date"})


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


def header_of(scope: Scope, wanted: bytes) -> bytes | None:
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


def has_body(scope: Scope) -> bool:
    return header_of(scope, b"content-length") not in (None, b"0") or (
        header_of(scope, b"transfer-encoding") is not None
    )


def declared_length(scope: Scope) -> int | None:
    value = header_of(scope, b"content-length")
    return ascii_integer(value.decode("latin-1")) if value is not None else None
