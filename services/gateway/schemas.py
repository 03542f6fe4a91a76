"""Wire types of the gateway."""

from __future__ import annotations

from datetime import datetime

from services.common.schemas import WireStruct


class ServiceHealth(WireStruct, omit_defaults=True):
    status: str  # "up" or "down"
    database: str  # "connected", "disconnected" or "unknown" (service unreachable)
    latency_ms: float | None = None
    error: str | None = None
    # With several replicas (EMOGO_<SERVICE>_URL lists more than one URL).
    replicas: int | None = None
    replicas_up: int | None = None


class GatewayHealth(WireStruct):
    """The seed's health keys, plus the state of each service."""

    status: str
    database: str
    timestamp: datetime
    services: dict[str, ServiceHealth]
