"""The media service: vlogs and their video bytes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import msgspec
import pymongo
from litestar import Litestar

from services.common.research.wiring import SHARED_DOCUMENTS, shared_state
from services.common.runtime.database import INDEX_BUILD_TIMEOUT_SECONDS
from services.common.runtime.periodic import Periodic
from services.common.runtime.workers import WORKER_VARIABLE
from services.common.web.app import build_app
from services.media import services, tus
from services.media.controllers import VlogController
from services.media.deps import DEPENDENCIES
from services.media.models import DOCUMENTS
from services.media.previews import PreviewWorker
from services.media.resumable import ResumableUploadController
from services.media.settings import MediaSettings, load_settings
from services.media.storage import GridFSStorage
from services.media.tus import Resumable
from services.media.upload_controller import UploadController
from services.media.uploads import Uploads

logger = logging.getLogger("emogo.media")
CLEANUP_EVERY_SECONDS = 300


def create_app(settings: MediaSettings | None = None) -> Litestar:
    settings = settings or load_settings()
    # Each worker keeps temporary copies apart: a worker that starts clears what its
    # predecessor of the same number left, never what a sibling is still receiving.
    worker = os.environ.get(WORKER_VARIABLE)
    if worker:
        settings = msgspec.structs.replace(
            settings, temp_dir=settings.temp_dir / f"worker-{worker}"
        )

    @asynccontextmanager
    async def media_lifespan(app: Litestar) -> AsyncIterator[None]:
        """Storage, the preview worker and the clean-up of abandoned uploads, after the
        database lifespan has opened the client."""
        storage = GridFSStorage(app.state.mongo[settings.db_name])
        with pymongo.timeout(INDEX_BUILD_TIMEOUT_SECONDS):  # an index build on a large store
            await storage.prepare()
        previews = PreviewWorker(settings, storage)
        app.state.storage = storage
        app.state.previews = previews
        app.state.uploads = Uploads(settings, storage, previews)
        app.state.resumable = Resumable(
            app.state.uploads, storage, settings.resumable_upload_seconds
        )
        older = timedelta(seconds=settings.stale_upload_seconds)
        # Temporary copies of an earlier run are of uploads that died with it.
        await asyncio.to_thread(services.clear_temp_dir, settings.temp_dir)

        async def tidy_up() -> None:
            removed = await services.remove_stale_uploads(storage, older)
            removed += await app.state.resumable.remove_expired()
            if removed:
                logger.info("removed abandoned uploads", extra={"count": removed})
            # Previews whose worker died mid-way, once their claim has lapsed.
            await previews.resume()

        await previews.resume()
        cleaner = Periodic("clean-up of abandoned uploads", tidy_up, CLEANUP_EVERY_SECONDS, logger)
        cleaner.start()
        try:
            yield
        finally:
            await cleaner.stop()
            await previews.stop()

    return build_app(
        settings,
        title="EmoGo media",
        description="Video diaries (vlogs): upload, metadata, playback and download.",
        route_handlers=[UploadController, VlogController, ResumableUploadController],
        documents=[*DOCUMENTS, *SHARED_DOCUMENTS],
        state=shared_state(),
        dependencies=DEPENDENCIES,
        extra_lifespan=[media_lifespan],
        options_headers=dict.fromkeys(
            (tus.PATH, f"{tus.PATH}/{{upload_id:str}}"),
            tus.protocol_headers(settings.max_upload_bytes),
        ),
    )
