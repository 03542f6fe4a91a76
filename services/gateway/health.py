"""The gateway's `/health`: every service's readiness (each replica's `/ready`), and
the database as the services see it; `/ready`, the gateway process itself."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import msgspec
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec

from services.common.web.schemas import Liveness, utc_now
from services.gateway.deps import Proxy
from services.gateway.proxy.relay import ReverseProxy
from services.gateway.schemas import GatewayHealth, ServiceHealth


async def service_health(proxy: ReverseProxy, service: str) -> ServiceHealth:
    """Up when any replica is ready; `replicas_up` says how many of how many are."""
    replicas = proxy.upstreams[service]
    results = await asyncio.gather(*(_replica_health(proxy, url) for url in replicas.urls))
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


async def _replica_health(proxy: ReverseProxy, base: str) -> ServiceHealth:
    started = time.perf_counter()
    try:
        async with proxy.session.get(f"{base}/ready", timeout=proxy.health_timeout) as answer:
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


async def gateway_health(proxy: ReverseProxy) -> GatewayHealth:
    """Every service, each up when any of its replicas is ready, and the database."""
    names = list(proxy.upstreams)
    results = await asyncio.gather(*(service_health(proxy, n) for n in names))
    services = dict(zip(names, results, strict=True))
    all_up = all(s.status == "up" for s in results)
    connected = all(s.database == "connected" for s in results)
    return GatewayHealth(
        status="healthy" if all_up and connected else "unhealthy",
        database="connected" if connected else "disconnected",
        timestamp=utc_now(),
        services=services,
    )


class HealthController(Controller):
    path = "/"
    tags = ["health"]

    @get(
        "/health",
        operation_id="health",
        summary="Every service and the database",
        # Unhealthy is still the report, with the failing part marked `down`.
        responses={
            503: ResponseSpec(
                generate_examples=False,
                data_container=GatewayHealth,
                description="A service or the database is down (the report says which)",
            )
        },
    )
    async def health(self, proxy: Proxy) -> Response[GatewayHealth]:
        report = await gateway_health(proxy)
        return Response(report, status_code=200 if report.status == "healthy" else 503)

    @get("/ready", operation_id="ready", summary="Liveness of the gateway process itself")
    async def ready(self) -> Liveness:
        return Liveness(status="healthy", service="gateway", timestamp=utc_now())
