"""Settings of the media service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.settings import ServiceSettings, load_service_settings


def load_settings(environ: Mapping[str, str] | None = None) -> ServiceSettings:
    return load_service_settings("media", environ)
