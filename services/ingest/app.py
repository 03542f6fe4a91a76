"""The ingest service: sentiments and GPS fixes from phones."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import build_app
from services.common.settings import ServiceSettings
from services.ingest.models import DOCUMENTS
from services.ingest.settings import load_settings


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_app(
        settings or load_settings(),
        title="EmoGo ingest",
        description="Sentiments and GPS fixes sent by participants' phones.",
        route_handlers=[],
        documents=DOCUMENTS,
    )
