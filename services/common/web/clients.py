"""Who is at the other end of a request: the client's address as the services see it.

Owned by no service; read by admin (rate limits of sign-in and enrolment) and media
(upload slots per writer). The services are reached through the gateway, which
appends the address its connection came from to X-Forwarded-For (and believes a
client's own header only from EMOGO_TRUSTED_PROXIES), so the last entry is the one
the gateway saw."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    forwarded = connection.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return connection.client.host if connection.client else "unknown"
