"""Runs one service: `python -m services.<name>` ends up here.

One worker process by default; `EMOGO_<SERVICE>_WORKERS=N` runs N on the same port
(services.common.runtime.workers)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from litestar import Litestar

from services.common.runtime.server import guarded_protocol
from services.common.runtime.settings import ConfigError, ServiceSettings
from services.common.runtime.workers import WorkerPool, listening_socket

GRACEFUL_SHUTDOWN_SECONDS = 10
S = TypeVar("S", bound=ServiceSettings)


def server_config(settings: ServiceSettings, app: Litestar) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        http=guarded_protocol(settings.connection_limits),
        # X-Forwarded-For only from the configured proxies: uvicorn's default believes
        # any process on loopback, which would let a local client pick its address.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or "",
    )


def serve(load_settings: Callable[[], S], create_app: Callable[[S], Litestar]) -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.workers == 1:
        uvicorn.Server(server_config(settings, create_app(settings))).run()
        return

    def run_worker(sock: socket.socket) -> None:
        uvicorn.Server(server_config(settings, create_app(settings))).run(sockets=[sock])

    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        print(f"cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    WorkerPool(settings.service, settings.workers, run_worker).run(sock)
