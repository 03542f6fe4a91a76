"""A resumable upload ended (DELETE) while its last request was finishing it: its bytes
are gone, and the finishing request answers 410, not a 500 about missing chunks. Real
storage on the test database, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from beanie import init_beanie
from pymongo import AsyncMongoClient

from services.common.web.errors import Gone
from services.common.web.schemas import Principal
from services.media.models import DOCUMENTS
from services.media.previews import PreviewWorker
from services.media.storage import GridFSStorage
from services.media.tus import Resumable
from services.media.uploads import Uploads
from tests.media.conftest import h264_video
from tests.media.test_previews import _settings


def test_an_upload_ended_while_it_is_finished_answers_410(
    mongodb_uri: str, db_name: str, tmp_path: Path
) -> None:
    video = h264_video(tmp_path / "v.mp4", 3)

    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        try:
            database = client[db_name]
            await init_beanie(database=database, document_models=DOCUMENTS)
            storage = GridFSStorage(database)
            await storage.prepare()
            settings = _settings(tmp_path)
            uploads = Uploads(settings, storage, PreviewWorker(settings, storage))
            resumable = Resumable(uploads, storage, 3600)
            writer = Principal(role="device")
            upload = await resumable.create(writer, len(video), {"user_id": "ended"})
            lease = await resumable._take_lease(upload)

            async def pieces():  # type: ignore[no-untyped-def]
                yield video

            await resumable._store_all(upload, lease, pieces())
            # The DELETE's work, between the last byte and the finishing read.
            await storage.delete(upload.storage_id)
            with pytest.raises(Gone, match="ended while it was being finished"):
                await resumable.complete(upload, writer)
        finally:
            await client.close()

    asyncio.run(scenario())
