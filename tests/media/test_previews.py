"""A preview cut short leaves no bytes behind. No vlog names a preview until it is
finished, so chunks it stored before an error, or before the service stopped, would
be found by no clean-up: the worker takes them away itself. Real storage on the test
database; only the preview's writer is made to fail (or stall) after its first piece."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient

from services.media.models import DOCUMENTS, PreviewState, VlogState, collection
from services.media.previews import PreviewWorker
from services.media.settings import load_settings
from services.media.storage import GridFSStorage
from tests.media.conftest import noise_video
from tests.support import TOKENS


class CutShort:
    """The real storage, whose writers stop at their second piece: they fail, or wait
    for ever (until the worker is stopped)."""

    def __init__(self, storage: GridFSStorage, stall: bool) -> None:
        self.storage = storage
        self.stall = stall
        self.reached = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    async def open_writer(self, *args: Any) -> Any:
        real = await self.storage.open_writer(*args)
        outer = self

        class Writer:
            pieces = 0

            async def write(self, data: bytes) -> None:
                if self.pieces == 1:
                    outer.reached.set()
                    if outer.stall:
                        await asyncio.Event().wait()
                    raise OSError("the database stopped answering")
                self.pieces += 1
                await real.write(data)

            async def close(self) -> None:
                await real.close()

            async def abort(self) -> None:
                await real.abort()

        return Writer()


@pytest.mark.parametrize("stall", [False, True], ids=["error", "stopped"])
def test_a_preview_cut_short_leaves_no_chunks(
    mongodb_uri: str, db_name: str, tmp_path: Path, stall: bool
) -> None:
    settings = load_settings(
        {
            "EMOGO_ADMIN_TOKEN": TOKENS["admin"],
            "EMOGO_VIEWER_TOKEN": TOKENS["viewer"],
            "EMOGO_DEVICE_TOKEN": TOKENS["device"],
            "EMOGO_DATA_DIR": str(tmp_path),
            "EMOGO_LOG_DIR": str(tmp_path / "logs"),
        }
    )
    original = noise_video(tmp_path / "noise.mp4")

    async def scenario() -> tuple[dict[str, Any], set[ObjectId]]:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        try:
            database = client[db_name]
            await init_beanie(database=database, document_models=DOCUMENTS)
            storage = GridFSStorage(database)
            await storage.prepare()
            storage_id = ObjectId()
            writer = await storage.open_writer(storage_id, "noise.mp4", {})
            await writer.write(original)
            await writer.close()
            vlog_id = ObjectId()
            await collection().insert_one(
                {
                    "_id": vlog_id,
                    "user_id": "P-preview",
                    "state": VlogState.READY,
                    "storage_id": storage_id,
                    "size": len(original),
                    "container": "mp4",
                    "preview_state": PreviewState.PENDING,
                }
            )
            cut_short = CutShort(storage, stall)
            worker = PreviewWorker(settings, cut_short)  # type: ignore[arg-type]
            worker.submit(vlog_id, None)
            await asyncio.wait_for(cut_short.reached.wait(), 60)
            await (worker.stop() if stall else worker.idle())
            vlog = await collection().find_one({"_id": vlog_id})
            chunked = set(await database["videos.chunks"].distinct("files_id"))
            return vlog, chunked
        finally:
            await client.close()

    vlog, chunked = asyncio.run(scenario())
    # Only the original's chunks are stored: the preview's first piece was taken away.
    assert chunked == {vlog["storage_id"]}
    if stall:
        assert vlog["preview_state"] == PreviewState.PENDING  # resumed at the next start
    else:
        assert vlog["preview_state"] == PreviewState.FAILED
