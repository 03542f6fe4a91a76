"""A preview cut short leaves no bytes behind: chunks it stored before an error, or
before the service stopped, a finished file the stop kept from being named, the bytes
of an attempt whose process died, and a preview finished while its vlog was being
deleted. Real storage on the test database; only the preview's writer is made to fail
(or stall) after its first piece, or to stall once its file is complete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient

from services.media import services as media_services
from services.media.models import DOCUMENTS, PreviewState, VlogState, collection
from services.media.previews import PreviewWorker
from services.media.settings import MediaSettings, load_settings
from services.media.storage import GridFSStorage
from tests.media.conftest import noise_video
from tests.support import TOKENS


class CutShort:
    """The real storage, whose writers stop at their second piece: they fail, or wait
    for ever (until the worker is stopped); or, `after_close`, wait for ever once the
    file is complete, before the vlog names it."""

    def __init__(self, storage: GridFSStorage, stall: bool, after_close: bool = False) -> None:
        self.storage = storage
        self.stall = stall
        self.after_close = after_close
        self.reached = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    async def open_writer(self, *args: Any) -> Any:
        real = await self.storage.open_writer(*args)
        outer = self

        class Writer:
            pieces = 0

            async def write(self, data: bytes) -> None:
                if self.pieces == 1 and not outer.after_close:
                    outer.reached.set()
                    if outer.stall:
                        await asyncio.Event().wait()
                    raise OSError("the database stopped answering")
                self.pieces += 1
                await real.write(data)

            async def close(self) -> None:
                await real.close()
                if outer.after_close:
                    outer.reached.set()
                    await asyncio.Event().wait()

            async def abort(self) -> None:
                await real.abort()

        return Writer()


def _settings(tmp_path: Path) -> MediaSettings:
    return load_settings(
        {
            "EMOGO_ADMIN_TOKEN": TOKENS["admin"],
            "EMOGO_VIEWER_TOKEN": TOKENS["viewer"],
            "EMOGO_DEVICE_TOKEN": TOKENS["device"],
            "EMOGO_DATA_DIR": str(tmp_path),
            "EMOGO_LOG_DIR": str(tmp_path / "logs"),
        }
    )


async def _pending_vlog(database: Any, storage: GridFSStorage, original: bytes) -> ObjectId:
    """A stored original whose preview is still to be made; returns the vlog's id."""
    await init_beanie(database=database, document_models=DOCUMENTS)
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
    return vlog_id


async def _stored_ids(database: Any) -> tuple[set[ObjectId], set[ObjectId]]:
    """The ids of the GridFS files documents, and those that chunks belong to."""
    files = set(await database["videos.files"].distinct("_id"))
    return files, set(await database["videos.chunks"].distinct("files_id"))


@pytest.mark.parametrize(
    ("stall", "after_close"),
    [(False, False), (True, False), (True, True)],
    ids=["error", "stopped", "stopped-before-named"],
)
def test_a_preview_cut_short_leaves_no_bytes(
    mongodb_uri: str, db_name: str, tmp_path: Path, stall: bool, after_close: bool
) -> None:
    settings = _settings(tmp_path)
    original = noise_video(tmp_path / "noise.mp4")

    async def scenario() -> tuple[dict[str, Any], tuple[set[ObjectId], set[ObjectId]]]:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        try:
            database = client[db_name]
            storage = GridFSStorage(database)
            vlog_id = await _pending_vlog(database, storage, original)
            cut_short = CutShort(storage, stall, after_close)
            worker = PreviewWorker(settings, cut_short)  # type: ignore[arg-type]
            worker.submit(vlog_id, None)
            await asyncio.wait_for(cut_short.reached.wait(), 60)
            await (worker.stop() if stall else worker.idle())
            return await collection().find_one({"_id": vlog_id}), await _stored_ids(database)
        finally:
            await client.close()

    vlog, (files, chunked) = asyncio.run(scenario())
    # Only the original is stored: the preview's pieces, or its whole file, went.
    assert files == chunked == {vlog["storage_id"]}
    assert "preview_writing_id" not in vlog
    assert "preview_claimed_until" not in vlog
    if stall:
        assert vlog["preview_state"] == PreviewState.PENDING  # made at the next start
        assert "preview_storage_id" not in vlog
    else:
        assert vlog["preview_state"] == PreviewState.FAILED


def test_the_next_attempt_removes_what_a_dead_worker_wrote(
    mongodb_uri: str, db_name: str, tmp_path: Path
) -> None:
    """A worker killed mid-preview (SIGKILL: no clean-up of its own) left chunks and
    its claim; once the claim lapses, the next attempt removes them and finishes."""
    settings = _settings(tmp_path)
    original = noise_video(tmp_path / "noise.mp4")

    async def scenario() -> tuple[dict[str, Any], ObjectId, tuple[set[ObjectId], set[ObjectId]]]:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        try:
            database = client[db_name]
            storage = GridFSStorage(database)
            vlog_id = await _pending_vlog(database, storage, original)
            dead_id = ObjectId()
            await database["videos.chunks"].insert_one({"files_id": dead_id, "n": 0, "data": b"x"})
            await collection().update_one(
                {"_id": vlog_id},
                {
                    "$set": {
                        "preview_writing_id": dead_id,
                        "preview_claimed_until": datetime.now(UTC) - timedelta(minutes=1),
                    }
                },
            )
            worker = PreviewWorker(settings, storage)
            await worker.resume()
            await worker.idle()
            vlog = await collection().find_one({"_id": vlog_id})
            return vlog, dead_id, await _stored_ids(database)
        finally:
            await client.close()

    vlog, dead_id, (files, chunked) = asyncio.run(scenario())
    assert vlog["preview_state"] == PreviewState.READY
    assert dead_id not in chunked
    assert files == chunked == {vlog["storage_id"], vlog["preview_storage_id"]}


def test_a_preview_named_while_its_vlog_is_deleted_goes_with_it(
    mongodb_uri: str, db_name: str, tmp_path: Path
) -> None:
    """The deletion read the vlog before its preview was named, and deletes it after:
    the preview's bytes go as well."""
    original = noise_video(tmp_path / "noise.mp4")

    async def scenario() -> tuple[int, tuple[set[ObjectId], set[ObjectId]]]:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        try:
            database = client[db_name]
            storage = GridFSStorage(database)
            vlog_id = await _pending_vlog(database, storage, original)
            as_read = await collection().find_one({"_id": vlog_id})
            preview_id = ObjectId()
            writer = await storage.open_writer(preview_id, "preview.mp4", {})
            await writer.write(b"p" * 1000)
            await writer.close()
            await collection().update_one(
                {"_id": vlog_id},
                {"$set": {"preview_storage_id": preview_id, "preview_size": 1000}},
            )
            freed = await media_services.delete_vlogs(storage, [as_read])
            return freed, await _stored_ids(database)
        finally:
            await client.close()

    freed, (files, chunked) = asyncio.run(scenario())
    assert files == chunked == set()
    assert freed == len(original) + 1000
