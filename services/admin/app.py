"""The admin service: the companion app's users, characters, configs, logs, bootstrap."""

from __future__ import annotations

from litestar import Litestar

from services.admin.controllers import CredentialController
from services.admin.models import DOCUMENTS
from services.admin.settings import load_settings
from services.common.app import build_app
from services.common.settings import ServiceSettings


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    return build_app(
        settings or load_settings(),
        title="EmoGo admin",
        description="Users, AI characters and their configuration, provider keys, logs.",
        route_handlers=[CredentialController],
        documents=DOCUMENTS,
    )
