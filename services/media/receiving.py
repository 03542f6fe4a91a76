"""Receiving a video's bytes: `IncomingVideo` decides the type from the first bytes,
holds the size limit on the bytes received, computes the sha256 (and CRC-32) on the
way, sends the bytes to storage as they come, and keeps a temporary copy on local disk
for decoding. Memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import ObjectId

from services.common.web.errors import (
    PayloadTooLarge,
    UnsupportedMediaType,
    field_error,
)
from services.common.web.timestamps import stored_now
from services.media import video
from services.media.models import Vlog, VlogState, collection
from services.media.storage import StoredWriter, VideoStorage

FLUSH_BYTES = 1024 * 1024
VIDEO_FIELD = "video"
NOT_A_VIDEO = (
    "The file is not a supported video: its bytes are not MP4/MOV, WebM/MKV or AVI "
    "(the file name and Content-Type are not trusted)"
)


@dataclass
class IncomingVideo:
    """One video's bytes on their way into storage."""

    storage: VideoStorage
    storage_id: ObjectId
    temp_dir: Path
    limit: int
    original_name: str
    # Whose, as far as known when the bytes start (a form may name them later).
    user_id: str
    # The bytes are in storage already (a resumable upload): read, not written again.
    already_stored: bool = False
    vlog_id: ObjectId = field(default_factory=ObjectId)
    received: int = 0
    sha256: str = ""
    container: tuple[str, str, str] | None = None
    temp_path: Path | None = None
    _digest: Any = field(default_factory=hashlib.sha256)
    # CRC-32 too: ZIP exports can then store the video without reading it twice.
    crc32: int = 0
    _pending: bytearray = field(default_factory=bytearray)
    _writer: StoredWriter | None = None
    _temp: Any = None

    async def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit:
            raise PayloadTooLarge(
                f"The video is larger than the limit of {self.limit} bytes",
                extra={"limit": self.limit},
            )
        self._pending += data
        if self.container is None and len(self._pending) >= video.SIGNATURE_BYTES:
            await self._start()
        if len(self._pending) >= FLUSH_BYTES:
            await self._flush()

    async def _start(self) -> None:
        self.container = video.container_of(bytes(self._pending[: video.SIGNATURE_BYTES]))
        if self.container is None:
            raise UnsupportedMediaType(NOT_A_VIDEO)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        handle, name = await asyncio.to_thread(
            tempfile.mkstemp, suffix=self.container[2], dir=self.temp_dir
        )
        self.temp_path = Path(name)
        self._temp = open(handle, "wb")  # noqa: ASYNC230, SIM115 - written off the loop below
        await self._record()
        if not self.already_stored:
            self._writer = await self.storage.open_writer(
                self.storage_id, self.original_name, {"content_type": self.container[1]}
            )

    async def _record(self) -> None:
        """The upload in state `uploading`, so that the periodic clean-up finds what an
        upload cut short leaves behind."""
        assert self.container is not None
        now = stored_now()
        await Vlog(
            id=self.vlog_id,
            user_id=self.user_id,
            timestamp=now,
            uploaded_at=now,
            state=VlogState.UPLOADING,
            has_file=True,
            storage_id=self.storage_id,
            original_name=self.original_name,
            content_type=self.container[1],
            container=self.container[0],
        ).insert()

    async def _flush(self) -> None:
        data = bytes(self._pending)
        self._pending.clear()
        await asyncio.to_thread(self._keep, data)
        if self._writer is not None:
            await self._writer.write(data)

    def _keep(self, data: bytes) -> None:
        self._digest.update(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self._temp.write(data)

    async def finish(self) -> None:
        """Flushes what is left; `sha256` is then the whole video's."""
        if self.received == 0:
            raise field_error(VIDEO_FIELD, "is empty")
        if self.container is None:
            await self._start()
        await self._flush()
        await asyncio.to_thread(self._temp.close)
        if self._writer is not None:
            await self._writer.close()
        else:
            assert self.container is not None
            metadata = {"content_type": self.container[1]}
            await self.storage.seal(self.storage_id, self.received, self.original_name, metadata)
        self.sha256 = self._digest.hexdigest()

    async def discard(self) -> None:
        """Removes every trace: the record, the stored bytes and the temporary copy."""
        await collection().delete_one({"_id": self.vlog_id, "state": VlogState.UPLOADING})
        if self._temp is not None and not self._temp.closed:
            await asyncio.to_thread(self._temp.close)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.abort()
        await self.storage.delete(self.storage_id)
        self.remove_temp()

    def remove_temp(self) -> None:
        if self.temp_path is not None:
            self.temp_path.unlink(missing_ok=True)
