"""Settings of the gateway: where each service is and how long to wait for it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from services.common.runtime.settings import (
    DEFAULT_PORTS,
    SERVICE_NAMES,
    ConfigError,
    Environment,
    ServiceSettings,
    common_fields,
    read_service_token,
    temp_dir,
)

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "© OpenStreetMap contributors"


class GatewaySettings(ServiceSettings, frozen=True, kw_only=True):
    # Each service's base URLs: one, or several replicas (services.gateway.proxy.balancing).
    upstreams: dict[str, tuple[str, ...]]
    # Connecting and taking a pooled connection should be quick; a failure there
    # means the service is down (503). Reads and writes carry videos of hundreds of
    # MB, so they get minutes (504 when exceeded).
    connect_timeout: float
    pool_timeout: float
    read_timeout: float
    write_timeout: float
    health_timeout: float
    max_upstream_connections: int
    # Single posts of one credential that meet a request in flight go to ingest
    # together (services.gateway.proxy.coalescing), gathered for at most `relay_linger`
    # seconds once the last one is answered. Off only to measure what it saves.
    relay_together: bool
    relay_linger: float
    # Map tiles for the export page's GPS maps ({z}/{x}/{y} URL; "" turns them off:
    # the offline drawing is shown), and the credit their provider requires.
    map_tiles: str
    map_attribution: str
    # Record reads of participant data and changes in the audit trail
    # (services.gateway.audit.auditing). Off only to measure what recording costs.
    audit: bool
    # Its own credential towards the admin service, for appending to the audit trail;
    # and the folder of its audit journal (entries kept on disk until stored).
    service_token: str
    audit_journal_dir: Path
    # Exports that cost memory (ZIP, Parquet) made at once per process, and how long
    # another waits for a turn before 503 (services.gateway.exports.turns).
    heavy_exports: int
    export_wait_seconds: float
    # Where the ZIP export spools the files that follow the one streaming
    # (services.gateway.exports.fanout).
    temp_dir: Path


def load_settings(environ: Mapping[str, str] | None = None) -> GatewaySettings:
    env = Environment(environ)
    # A service's port setting also moves the gateway's default URL for it.
    upstreams = {}
    for name in SERVICE_NAMES:
        port = env.port(f"EMOGO_{name.upper()}_PORT", DEFAULT_PORTS[name])
        upstreams[name] = env.http_urls(f"EMOGO_{name.upper()}_URL", f"http://127.0.0.1:{port}")
    fields = common_fields("gateway", env)
    data_dir: Path = fields["data_dir"]  # type: ignore[assignment]  # fields checked one by one by common_fields
    return GatewaySettings(
        **fields,  # type: ignore[arg-type]  # fields checked one by one by common_fields
        upstreams=upstreams,
        connect_timeout=env.number("EMOGO_GATEWAY_CONNECT_TIMEOUT", 3.0, 0.1, 60.0),
        pool_timeout=env.number("EMOGO_GATEWAY_POOL_TIMEOUT", 5.0, 0.1, 60.0),
        read_timeout=env.number("EMOGO_GATEWAY_READ_TIMEOUT", 300.0, 0.1, 3600.0),
        write_timeout=env.number("EMOGO_GATEWAY_WRITE_TIMEOUT", 300.0, 0.1, 3600.0),
        health_timeout=env.number("EMOGO_GATEWAY_HEALTH_TIMEOUT", 2.0, 0.1, 60.0),
        max_upstream_connections=env.integer("EMOGO_GATEWAY_MAX_CONNECTIONS", 200, 1, 10000),
        relay_together=env.flag("EMOGO_GATEWAY_RELAY_TOGETHER", True),
        relay_linger=env.number("EMOGO_GATEWAY_RELAY_LINGER_MS", 3.0, 0.0, 100.0) / 1000,
        map_tiles=_tile_url(env.raw("EMOGO_MAP_TILES")),
        map_attribution=env.text("EMOGO_MAP_ATTRIBUTION", OSM_ATTRIBUTION),
        audit=env.flag("EMOGO_AUDIT", True),
        service_token=read_service_token(env, fields["credentials"]),  # type: ignore[arg-type]  # fields checked one by one by common_fields
        audit_journal_dir=Path(
            env.text("EMOGO_AUDIT_JOURNAL_DIR", str(data_dir / "audit-journal"))
        ).resolve(),
        heavy_exports=env.integer("EMOGO_GATEWAY_HEAVY_EXPORTS", 2, 1, 64),
        export_wait_seconds=env.number("EMOGO_GATEWAY_EXPORT_WAIT_SECONDS", 5.0, 0.0, 600.0),
        temp_dir=temp_dir("gateway", env, data_dir),
    )


def _tile_url(value: str | None) -> str:
    """EMOGO_MAP_TILES: OpenStreetMap's tiles when unset, none when "off"."""
    if value is None:
        return OSM_TILES
    if value.lower() == "off":
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("EMOGO_MAP_TILES", f"must be an http(s) URL or off, got {value!r}")
    if not all(f"{{{name}}}" in value for name in "zxy"):
        raise ConfigError("EMOGO_MAP_TILES", "must contain {z}, {x} and {y}")
    return value
