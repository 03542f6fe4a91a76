"""The ingest service: sentiments and GPS fixes from phones."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import build_app
from services.ingest.controllers import GpsController, SentimentController, TelemetryController
from services.ingest.models import DOCUMENTS
from services.ingest.settings import IngestSettings, load_settings


def create_app(settings: IngestSettings | None = None) -> Litestar:
    return build_app(
        settings or load_settings(),
        title="EmoGo ingest",
        description="Sentiments and GPS fixes sent by participants' phones.",
        route_handlers=[SentimentController, GpsController, TelemetryController],
        documents=DOCUMENTS,
    )
