"""The admin service: the companion app's users, characters, configs, logs, bootstrap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from services.admin.bootstrap import Target, bootstrap
from services.admin.companion import accounts
from services.admin.companion.account_controller import (
    CredentialController,
    OrchestratorController,
)
from services.admin.companion.character_controller import (
    CharacterController,
    UserConfigController,
)
from services.admin.companion.logs import LogController
from services.admin.deps import DEPENDENCIES
from services.admin.limits import EnrolmentLimits, SharedRateLimit
from services.admin.models import DOCUMENTS
from services.admin.research.audit import AuditAppendController, AuditController
from services.admin.research.deletions import ReceiptController
from services.admin.research.enrolment import EnrolmentController
from services.admin.research.notices import NoticeController, NoticeSender
from services.admin.research.participants import ParticipantController
from services.admin.research.replay import DeletionReplay
from services.admin.research.studies import StudyController
from services.admin.research.viewer_tokens import ViewerTokenController
from services.admin.settings import AdminSettings, load_settings
from services.common.research.studies import ensure_default_study
from services.common.research.wiring import SHARED_DOCUMENTS, shared_state
from services.common.web.app import build_app


@asynccontextmanager
async def default_study(_: Litestar) -> AsyncIterator[None]:
    await ensure_default_study()
    yield


@asynccontextmanager
async def silence_notices(app: Litestar) -> AsyncIterator[None]:
    """Each study's daily notice of who stopped reporting (services.admin.research.notices)."""
    sender = NoticeSender(app.state.settings)
    sender.start()
    try:
        yield
    finally:
        await sender.stop()


@asynccontextmanager
async def replay_deletions(app: Litestar) -> AsyncIterator[None]:
    """Deletions a restored database does not know, done again (services.admin.research.replay)."""
    replay = DeletionReplay(app.state.settings)
    replay.start()
    try:
        yield
    finally:
        await replay.stop()


def create_app(settings: AdminSettings | None = None) -> Litestar:
    settings = settings or load_settings()
    target = Target(
        mongodb_uri=settings.mongodb_uri,
        db_name=settings.db_name,
        admin_username=settings.mongodb_admin_username,
        admin_password=settings.mongodb_admin_password,
    )
    app = build_app(
        settings,
        title="EmoGo admin",
        description="Users, AI characters and their configuration, provider keys, logs.",
        route_handlers=[
            CredentialController,
            UserConfigController,
            CharacterController,
            LogController,
            OrchestratorController,
            StudyController,
            ParticipantController,
            EnrolmentController,
            ViewerTokenController,
            NoticeController,
            AuditController,
            AuditAppendController,
            ReceiptController,
        ],
        documents=[*DOCUMENTS, *SHARED_DOCUMENTS],
        state=shared_state(),
        dependencies=DEPENDENCIES,
        prepare_database=(lambda: bootstrap(target)) if settings.bootstrap_database else None,
        extra_lifespan=[default_study, silence_notices, replay_deletions],
    )
    # Read and checked now, so a broken defaults folder stops the start-up.
    app.state.defaults = accounts.Defaults(settings.defaults_dir)
    app.state.vault = accounts.KeyVault(settings.secret_keys)
    app.state.sign_in_limiter = SharedRateLimit(
        "sign-in",
        settings.sign_in_requests_per_minute,
        "Too many sign-in requests from this address; retry later",
    )
    app.state.enrolment_limits = EnrolmentLimits(
        settings.enrolment_attempts_per_address, settings.enrolment_attempts_per_study
    )
    return app
