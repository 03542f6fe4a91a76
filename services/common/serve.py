"""Runs one service process: `python -m services.<name>` ends up here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from litestar import Litestar

from services.common.server import guarded_protocol
from services.common.settings import ConfigError, ServiceSettings

GRACEFUL_SHUTDOWN_SECONDS = 10
S = TypeVar("S", bound=ServiceSettings)


def serve(load_settings: Callable[[], S], create_app: Callable[[S], Litestar]) -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        http=guarded_protocol(settings.connection_limits),
    )
