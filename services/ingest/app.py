"""The ingest service: sentiments and GPS fixes from phones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from litestar import Litestar
from pymongo.asynchronous.collection import AsyncCollection

from services.common.research.wiring import SHARED_DOCUMENTS, shared_state
from services.common.web.app import build_app
from services.ingest.admission import TakingTurns
from services.ingest.controllers import GpsController, SentimentController, TelemetryController
from services.ingest.deps import DEPENDENCIES
from services.ingest.folding import RECOUNT_TIMEOUT_SECONDS
from services.ingest.inserts import GroupInserter
from services.ingest.kinds import KINDS, TelemetryKind
from services.ingest.models import DOCUMENTS
from services.ingest.rollup_worker import RollupFolder, ensure_rollups
from services.ingest.settings import IngestSettings, load_settings


@asynccontextmanager
async def rollups_ready(app: Litestar) -> AsyncIterator[None]:
    """The daily rollups add up to the records at start, and stay so while running."""
    # Counting a large collection takes the embedded database longer than one
    # operation's usual deadline.
    with pymongo.timeout(RECOUNT_TIMEOUT_SECONDS):
        await ensure_rollups()
    # A write of unknown outcome is settled once its deadline has passed, twice over.
    settings = app.state.settings
    folder = RollupFolder(2 * settings.db_timeout + 1, settings.display_timezone)
    folder.start()
    try:
        yield
    finally:
        await folder.stop()


def _collection_of(kind: TelemetryKind) -> Callable[[], AsyncCollection[Any]]:
    """The kind's collection as it is when asked (Beanie binds it at start-up)."""
    return lambda: kind.collection


@asynccontextmanager
async def grouped_inserts(app: Litestar) -> AsyncIterator[None]:
    """Single records go to the database in groups (services.ingest.inserts); what was
    handed over is sent before the app stops."""
    app.state.inserters = {kind.key: GroupInserter(_collection_of(kind)) for kind in KINDS}
    # Large batches take turns at the database (services.ingest.admission).
    app.state.batch_turns = TakingTurns()
    try:
        yield
    finally:
        for inserter in app.state.inserters.values():
            await inserter.drain()


def create_app(settings: IngestSettings | None = None) -> Litestar:
    return build_app(
        settings or load_settings(),
        title="EmoGo ingest",
        description="Sentiments and GPS fixes sent by participants' phones.",
        route_handlers=[SentimentController, GpsController, TelemetryController],
        documents=[*DOCUMENTS, *SHARED_DOCUMENTS],
        state=shared_state(),
        dependencies=DEPENDENCIES,
        extra_lifespan=[rollups_ready, grouped_inserts],
    )
