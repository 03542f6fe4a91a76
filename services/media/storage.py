"""Where video bytes live: a small interface, and GridFS behind it.

Nothing else in the service touches GridFS, so an S3-compatible backend is one more
class with these four methods (multipart upload for `open_writer`, ranged GET for
`read_range`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from bson import ObjectId
from gridfs import AsyncGridFSBucket, NoFile
from pymongo.asynchronous.database import AsyncDatabase

# MongoDB's default: chunks of 255 KiB fit one document each with room to spare.
CHUNK_BYTES = 255 * 1024
BUCKET = "videos"


class StoredWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
    async def abort(self) -> None: ...


class VideoStorage(Protocol):
    async def open_writer(
        self, object_id: ObjectId, name: str, metadata: Mapping[str, Any]
    ) -> StoredWriter: ...

    def read_range(self, object_id: ObjectId, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` inclusive, in pieces."""
        ...

    async def delete(self, object_id: ObjectId) -> None:
        """Removes the object, also when its upload never finished; absent is fine."""
        ...


class GridFSStorage:
    """Videos in a GridFS bucket of the service's database."""

    def __init__(self, database: AsyncDatabase) -> None:
        self.bucket = AsyncGridFSBucket(database, bucket_name=BUCKET, chunk_size_bytes=CHUNK_BYTES)
        self.chunks = database[f"{BUCKET}.chunks"]

    async def open_writer(
        self, object_id: ObjectId, name: str, metadata: Mapping[str, Any]
    ) -> StoredWriter:
        return self.bucket.open_upload_stream_with_id(object_id, name, metadata=dict(metadata))

    async def read_range(self, object_id: ObjectId, start: int, end: int) -> AsyncIterator[bytes]:
        stream = await self.bucket.open_download_stream(object_id)
        try:
            await stream.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                piece = await stream.read(min(CHUNK_BYTES, remaining))
                if not piece:
                    break
                remaining -= len(piece)
                yield piece
        finally:
            await stream.close()

    async def delete(self, object_id: ObjectId) -> None:
        try:
            await self.bucket.delete(object_id)
        except NoFile:
            # An upload cut short leaves chunks without a files document.
            await self.chunks.delete_many({"files_id": object_id})
