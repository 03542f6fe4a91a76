"""`/health` (liveness, no I/O) and `/ready` (the database answers a ping) for a service."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from services.common.runtime.database import ping
from services.common.web.schemas import Liveness, Readiness, utc_now


class HealthController(Controller):
    path = "/"
    tags = ["health"]

    @get("/health", operation_id="health", summary="Liveness: the process answers")
    async def health(self, request: Request[Any, Any, Any]) -> Liveness:
        return Liveness(
            status="healthy", service=request.app.state.settings.service, timestamp=utc_now()
        )

    @get("/ready", operation_id="ready", summary="Readiness: the database answers a ping")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[Readiness]:
        client = getattr(request.app.state, "mongo", None)
        connected = client is not None and await ping(client)
        body = Readiness(
            status="healthy" if connected else "unhealthy",
            service=request.app.state.settings.service,
            database="connected" if connected else "disconnected",
            timestamp=utc_now(),
        )
        return Response(body, status_code=200 if connected else 503)
