"""H.264 previews of videos browsers cannot play, made in the background one at a
time (it is CPU-bound), resumed after a restart; the original is never changed."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from services.common.web.timestamps import stored_now
from services.media import video
from services.media.models import WITHOUT_THUMBNAIL, PreviewState, VlogState, collection
from services.media.receiving import FLUSH_BYTES
from services.media.services import extension_of
from services.media.settings import MediaSettings
from services.media.storage import VideoStorage

logger = logging.getLogger("emogo.media")
# Long enough for any preview; a worker that died holding a claim is replaced later.
PREVIEW_CLAIM = timedelta(minutes=15)


# The fields of a worker's claim, unset when it lets go.
_CLAIM = {"preview_writing_id": "", "preview_claimed_until": ""}


def _unclaimed(now: datetime) -> dict[str, Any]:
    return {"preview_claimed_until": {"$not": {"$gt": now}}}


class PreviewWorker:
    """Makes H.264 previews in the background, one at a time (it is CPU-bound)."""

    def __init__(self, settings: MediaSettings, storage: VideoStorage) -> None:
        self.settings = settings
        self.storage = storage
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = asyncio.Semaphore(1)

    def submit(self, vlog_id: Any, source: Path | None) -> None:
        task = asyncio.create_task(self._run(ObjectId(str(vlog_id)), source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """Previews a restart interrupted (and none another worker is making)."""
        pending = collection().find(
            {
                "preview_state": PreviewState.PENDING,
                "state": VlogState.READY,
                **_unclaimed(stored_now()),
            },
            {"_id": 1},
        )
        async for vlog in pending:
            self.submit(vlog["_id"], None)

    async def _claim(self, vlog_id: ObjectId) -> tuple[ObjectId, dict[str, Any]] | None:
        """The storage id this worker may write the preview under, and the vlog; None
        when another worker is making it: one worker per vlog, across workers and
        replicas; a claim lapses if its worker dies. The id is named by the vlog before
        a byte is written, so the bytes of an attempt that died (SIGKILL) are found and
        removed."""
        now = stored_now()
        preview_id = ObjectId()
        vlog = await collection().find_one_and_update(
            {"_id": vlog_id, "preview_state": PreviewState.PENDING, **_unclaimed(now)},
            {
                "$set": {
                    "preview_claimed_until": now + PREVIEW_CLAIM,
                    "preview_writing_id": preview_id,
                }
            },
            projection=WITHOUT_THUMBNAIL,
            return_document=ReturnDocument.BEFORE,
        )
        if vlog is None:
            return None
        if vlog.get("preview_writing_id") is not None:  # an attempt that died mid-way
            await self.storage.delete(vlog["preview_writing_id"])
        return preview_id, vlog

    async def _let_go(
        self, vlog_id: ObjectId, preview_id: ObjectId, problem: BaseException
    ) -> None:
        """After an attempt cut short: its bytes go, and the vlog is released (failed
        for an error; still pending when the service stops, to be made at the next
        start). A preview the vlog already names stays."""
        release: dict[str, Any] = {"$unset": _CLAIM}
        if not isinstance(problem, asyncio.CancelledError):
            release["$set"] = {
                "preview_state": PreviewState.FAILED,
                "preview_error": str(problem)[:300],
            }
        # Conditional on the attempt's own id: a naming update still on its way to the
        # server then finds nothing to change, so the bytes are surely nobody's.
        released = await collection().update_one(
            {"_id": vlog_id, "preview_writing_id": preview_id}, release
        )
        if not released.modified_count:
            vlog = await collection().find_one({"_id": vlog_id}, {"preview_storage_id": 1})
            if vlog is not None and vlog.get("preview_storage_id") == preview_id:
                return
        await self.storage.delete(preview_id)

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, vlog_id: ObjectId, source: Path | None) -> None:
        target = None
        try:
            async with self._turn:
                claimed = await self._claim(vlog_id)
                if claimed is None:
                    return
                preview_id, vlog = claimed
                try:
                    if source is None or not await asyncio.to_thread(source.exists):
                        source = await self._fetch(vlog)
                    target = source.with_suffix(".preview.mp4")
                    await asyncio.to_thread(
                        video.make_preview, source, target, self.settings.preview_max_height
                    )
                    size = await self._store(vlog_id, preview_id, target)
                    named = await collection().update_one(
                        {"_id": vlog_id, "preview_writing_id": preview_id},
                        {
                            "$set": {
                                "preview_state": PreviewState.READY,
                                "preview_storage_id": preview_id,
                                "preview_size": size,
                            },
                            "$unset": _CLAIM,
                        },
                    )
                except BaseException as problem:
                    await self._let_go(vlog_id, preview_id, problem)
                    raise
                if not named.modified_count:  # deleted meanwhile
                    await self.storage.delete(preview_id)
                    return
                logger.info("preview ready", extra={"vlog_id": str(vlog_id), "bytes": size})
        except asyncio.CancelledError:
            raise
        except Exception as problem:
            logger.warning("preview failed", extra={"vlog_id": str(vlog_id), "error": str(problem)})
        finally:
            for path in (source, target):
                if path is not None:
                    path.unlink(missing_ok=True)

    async def _store(self, vlog_id: ObjectId, preview_id: ObjectId, preview: Path) -> int:
        """Writes the preview file to storage; returns its size."""
        writer = await self.storage.open_writer(
            preview_id, f"{vlog_id}.preview.mp4", {"content_type": "video/mp4"}
        )
        size = 0
        with preview.open("rb") as stream:
            while piece := stream.read(FLUSH_BYTES):
                size += len(piece)
                await writer.write(piece)
        await writer.close()
        return size

    async def _fetch(self, vlog: dict[str, Any]) -> Path:
        """A temporary local copy of a stored original, for decoding."""
        self.settings.temp_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(suffix=extension_of(vlog), dir=self.settings.temp_dir)
        with open(handle, "wb") as copy:  # noqa: ASYNC230 - local temp file
            async for piece in self.storage.read_range(vlog["storage_id"], 0, vlog["size"] - 1):
                await asyncio.to_thread(copy.write, piece)
        return Path(name)
