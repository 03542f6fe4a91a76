"""Wire types shared by every service. Handlers take and return msgspec Structs."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec


class WireStruct(msgspec.Struct, kw_only=True):
    """Base of every request and response body."""


class Liveness(WireStruct):
    status: str
    service: str
    timestamp: datetime


class Readiness(WireStruct):
    status: str
    service: str
    database: str
    timestamp: datetime


class Principal(WireStruct, frozen=True):
    """Who a request acts for: a role, and for per-user tokens the user it may reach."""

    role: str
    user_id: str | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)
