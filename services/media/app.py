"""The media service: vlogs and their video bytes."""

from __future__ import annotations

from litestar import Litestar

from services.common.app import build_app
from services.common.settings import ServiceSettings
from services.media.models import DOCUMENTS
from services.media.settings import load_settings


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_app(
        settings or load_settings(),
        title="EmoGo media",
        description="Video diaries (vlogs): upload, metadata, playback and download.",
        route_handlers=[],
        documents=DOCUMENTS,
    )
