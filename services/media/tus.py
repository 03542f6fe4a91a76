"""Resumable uploads, the tus protocol 1.0.0 (https://tus.io/protocols/resumable-upload):
the core (HEAD, PATCH, OPTIONS) and the extensions `creation`, `creation-with-upload`,
`termination`, `expiration` and `checksum` (sha1, which the protocol requires, and
sha256).

An upload is created with its length and the seed's details in `Upload-Metadata`;
PATCH requests append bytes at the offset the server reports. Bytes go to storage as
they arrive, a piece at a time, and the offset is moved on only once a piece is
stored, so the offset a client is told is always durable: after a dropped connection
or a restart of the service, HEAD tells where to go on. The last byte hands the video
to the same path as every other upload (`Uploads.from_stored`); a refused video
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from bson import ObjectId

from services.common.research.auth import Role, credential_id, written_as
from services.common.web.errors import (
    AppError,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    TooManyRequests,
    UnsupportedMediaType,
)
from services.common.web.schemas import Principal
from services.common.web.timestamps import stored_now
from services.common.web.validation import MOST_DIGITS, ascii_integer
from services.media.models import TusUpload
from services.media.services import get_vlog
from services.media.storage import MissingChunk, VideoStorage
from services.media.uploads import Stored, Uploads, check_details

PATH = "/api/vlogs/tus"
VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "termination", "expiration", "checksum")
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
PATCH_TYPE = "application/offset+octet-stream"
# Bytes stored per append: the offset moves on this often during a PATCH.
PIECE_BYTES = 1024 * 1024
LEASE_SECONDS = 60.0
METADATA_KEYS = ("user_id", "title", "description", "filename", "timestamp")


def protocol_headers(max_size: int) -> dict[str, str]:
    """What OPTIONS tells a client about this server."""
    return {
        "Tus-Resumable": VERSION,
        "Tus-Version": VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Max-Size": str(max_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
    }


def require_version(headers: Any) -> None:
    """Every request but OPTIONS names the protocol version it speaks (412 otherwise)."""
    if headers.get("tus-resumable") != VERSION:
        raise PreconditionFailed(f"Send Tus-Resumable: {VERSION}", headers={"Tus-Version": VERSION})


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs; the seed's fields
    are kept, others ignored."""
    found: dict[str, str] = {}
    for pair in (header or "").split(","):
        if not pair.strip():
            continue
        key, _, encoded = pair.strip().partition(" ")
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, non-ASCII text, UnicodeDecodeError
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not base64 UTF-8") from None
        if key in METADATA_KEYS:
            found[key] = value
    return found


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; 400 for an algorithm this
    server does not offer or a digest that is not base64."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: {algorithm!r} is not one of {', '.join(CHECKSUMS)}")
    try:
        return algorithm, base64.b64decode(encoded.strip(), validate=True)
    except ValueError:  # binascii.Error, or a digest with non-ASCII characters
        raise BadRequest("Upload-Checksum: the digest is not base64") from None


def expires_header(instant: datetime) -> str:
    """RFC 9110's date format, as `Upload-Expires` is written."""
    return format_datetime(instant.astimezone(UTC), usegmt=True)


def header_number(headers: Any, name: str) -> int:
    value = ascii_integer(headers.get(name.lower()))
    if value is None:
        raise BadRequest(
            f"{name} must be given as a non-negative integer of at most {MOST_DIGITS} digits"
        )
    return value


class Resumable:
    """Resumable uploads over `storage`, finished through `uploads`."""

    def __init__(self, uploads: Uploads, storage: VideoStorage, keep_seconds: float) -> None:
        self.uploads = uploads
        self.storage = storage
        self.keep = timedelta(seconds=keep_seconds)

    async def create(self, writer: Principal, length: int, metadata: dict[str, str]) -> TusUpload:
        """A new upload; 413 past the size limit, 403 for another participant."""
        limit = self.uploads.settings.max_upload_bytes
        if length > limit:
            raise PayloadTooLarge(
                f"Upload-Length is larger than the limit of {limit} bytes", extra={"limit": limit}
            )
        # Checked now as they will be once the last byte is here (another participant's
        # video, a bad timestamp, control characters in a title): refused before any byte.
        check_details(written_as(writer, {k: v for k, v in metadata.items() if k != "filename"}))
        await self._check_writer_room(credential_id(writer), length)
        now = stored_now()
        upload = TusUpload(
            id=secrets.token_hex(16),
            storage_id=ObjectId(),
            length=length,
            metadata=metadata,
            writer_role=str(writer.role),
            writer_user_id=writer.user_id if writer.role == Role.PARTICIPANT else None,
            writer_studies=list(writer.study_ids) if writer.study_ids is not None else None,
            writer_id=credential_id(writer),
            created_at=now,
            expires_at=now + self.keep,
        )
        await upload.insert()
        return upload

    async def _check_writer_room(self, writer_id: str, length: int) -> None:
        """429 when the writer has as many unfinished uploads open as one may, or they
        would reserve more bytes than one writer may."""
        settings = self.uploads.settings
        open_ones = TusUpload.get_pymongo_collection().find(
            {"writer_id": writer_id, "vlog_id": None, "expires_at": {"$gt": stored_now()}},
            {"length": 1},
        )
        count, reserved = 0, 0
        async for upload in open_ones:
            count += 1
            reserved += upload["length"]
        if count >= settings.open_resumable_per_writer:
            raise TooManyRequests(
                f"This writer has {count} unfinished uploads open, the most one may have; "
                "finish or end (DELETE) one first",
                headers={"Retry-After": "60"},
            )
        if reserved + length > settings.resumable_bytes_per_writer:
            raise TooManyRequests(
                f"This writer's unfinished uploads would reserve more than "
                f"{settings.resumable_bytes_per_writer} bytes; finish or end one first",
                headers={"Retry-After": "60"},
            )

    async def find(self, upload_id: str, writer: Principal) -> TusUpload:
        """The upload, for the writer who created it (404 for anyone else, as if absent);
        410 once expired."""
        upload = await TusUpload.get(upload_id) if len(upload_id) == 32 else None
        if upload is None or not _same_writer(upload, writer):
            raise NotFound(f"No upload {upload_id}")
        if upload.vlog_id is None and upload.expires_at <= stored_now():
            raise Gone(f"Upload {upload_id} has expired")
        return upload

    async def append(
        self,
        upload: TusUpload,
        offset: int,
        chunks: AsyncIterator[bytes],
        writer: Principal,
        checksum: tuple[str, bytes] | None = None,
    ) -> tuple[int, Stored | None]:
        """Stores the bytes sent at `offset`; (the offset now, the vlog once complete).

        Without a checksum, bytes are stored as they arrive, so a connection that
        drops keeps what came. With one, they wait in a temporary file (on disk, not
        in memory) until the checksum is known to match (460 otherwise, and nothing
        of them is kept)."""
        if offset != upload.offset:
            raise Conflict(
                f"Upload-Offset {offset} is not this upload's offset {upload.offset}",
                headers={"Upload-Offset": str(upload.offset)},
            )
        lease = await self._take_lease(upload)
        try:
            if checksum is None:
                await self._store_all(upload, lease, self._within_length(upload, chunks))
            else:
                await self._store_checked(upload, lease, chunks, checksum)
        finally:
            with contextlib.suppress(Exception):
                await TusUpload.get_pymongo_collection().update_one(
                    {"_id": upload.id, "lease": lease}, {"$set": {"lease": None}}
                )
        if upload.offset < upload.length:
            return upload.offset, None
        return upload.offset, await self.complete(upload, writer)

    async def _within_length(
        self, upload: TusUpload, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        # `upload.offset` moves on as pieces are stored; the bytes of this request
        # count from where it started.
        started, sent = upload.offset, 0
        async for chunk in chunks:
            sent += len(chunk)
            if started + sent > upload.length:
                raise PayloadTooLarge(
                    f"More bytes than the Upload-Length of {upload.length}",
                    headers={"Upload-Offset": str(upload.offset)},
                )
            yield chunk

    async def _store_all(self, upload: TusUpload, lease: str, chunks: AsyncIterator[bytes]) -> None:
        pending = bytearray()
        async for chunk in chunks:
            pending += chunk
            while len(pending) >= PIECE_BYTES:
                await self._store_piece(upload, lease, bytes(pending[:PIECE_BYTES]))
                del pending[:PIECE_BYTES]
        if pending:
            await self._store_piece(upload, lease, bytes(pending))

    async def _store_checked(
        self,
        upload: TusUpload,
        lease: str,
        chunks: AsyncIterator[bytes],
        checksum: tuple[str, bytes],
    ) -> None:
        algorithm, expected = checksum
        digest = CHECKSUMS[algorithm]()
        folder = self.uploads.settings.temp_dir
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        handle, name = await asyncio.to_thread(tempfile.mkstemp, dir=folder, suffix=".tus")
        spool = Path(name)
        try:
            with open(handle, "wb") as out:  # noqa: ASYNC230 - written off the loop below
                async for chunk in self._within_length(upload, chunks):
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            if digest.digest() != expected:
                raise ChecksumMismatch(
                    f"The bytes sent do not match their {algorithm} Upload-Checksum",
                    headers={"Upload-Offset": str(upload.offset)},
                )
            await self._store_all(upload, lease, _read_file(spool))
        finally:
            await asyncio.to_thread(spool.unlink, missing_ok=True)

    async def complete(self, upload: TusUpload, writer: Principal) -> Stored:
        """The finished upload as a vlog, through the same checks as every upload."""
        if upload.vlog_id is not None:
            return await get_vlog(upload.vlog_id), True
        fields = {k: v for k, v in upload.metadata.items() if k != "filename"}
        try:
            stored = await self.uploads.from_stored(
                upload.storage_id,
                upload.length,
                upload.metadata.get("filename", "video"),
                fields,
                writer,
            )
        except MissingChunk:
            # Ended (DELETE) while it was being finished: its bytes are gone.
            raise Gone(f"Upload {upload.id} was ended while it was being finished") from None
        except AppError:
            # The video was refused: nothing of it stays (its bytes went with it).
            await upload.delete()
            raise
        await TusUpload.get_pymongo_collection().update_one(
            {"_id": upload.id}, {"$set": {"vlog_id": stored[0]["_id"]}}
        )
        return stored

    async def terminate(self, upload: TusUpload) -> None:
        await TusUpload.get_pymongo_collection().delete_one({"_id": upload.id})
        if upload.vlog_id is None:
            await self.storage.delete(upload.storage_id)

    async def remove_expired(self, now: datetime | None = None) -> int:
        """Unfinished uploads past their time, with their bytes (the periodic clean-up)."""
        expired = TusUpload.get_pymongo_collection().find(
            {"expires_at": {"$lte": now or stored_now()}, "vlog_id": None}
        )
        removed = 0
        async for document in expired:
            await self.storage.delete(document["storage_id"])
            await TusUpload.get_pymongo_collection().delete_one({"_id": document["_id"]})
            removed += 1
        return removed

    async def _take_lease(self, upload: TusUpload) -> str:
        lease = secrets.token_hex(8)
        now = stored_now()
        taken = await TusUpload.get_pymongo_collection().update_one(
            {
                "_id": upload.id,
                "offset": upload.offset,
                "$or": [{"lease": None}, {"lease_until": {"$lt": now}}],
            },
            {"$set": {"lease": lease, "lease_until": now + timedelta(seconds=LEASE_SECONDS)}},
        )
        if taken.modified_count != 1:
            raise Conflict(
                "Another request is sending bytes to this upload",
                headers={"Upload-Offset": str(upload.offset)},
            )
        return lease

    async def _store_piece(self, upload: TusUpload, lease: str, data: bytes) -> None:
        """Stores a piece, then moves the offset on (so the offset is always durable)."""
        await self.storage.append(upload.storage_id, upload.offset, data)
        now = stored_now()
        moved = await TusUpload.get_pymongo_collection().update_one(
            {"_id": upload.id, "lease": lease, "offset": upload.offset},
            {
                "$set": {
                    "offset": upload.offset + len(data),
                    "expires_at": now + self.keep,
                    "lease_until": now + timedelta(seconds=LEASE_SECONDS),
                }
            },
        )
        if moved.modified_count != 1:
            raise Conflict("This upload was taken over by another request")
        upload.offset += len(data)
        upload.expires_at = now + self.keep


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as spooled:  # noqa: ASYNC230 - read off the loop below
        while piece := await asyncio.to_thread(spooled.read, PIECE_BYTES):
            yield piece


def _same_writer(upload: TusUpload, writer: Principal) -> bool:
    if str(writer.role) != upload.writer_role:
        return False
    if writer.role == Role.PARTICIPANT:
        return writer.user_id == upload.writer_user_id and (
            list(writer.study_ids or []) == (upload.writer_studies or [])
        )
    return True


def check_patch_type(content_type: str | None) -> None:
    if (content_type or "").split(";")[0].strip().lower() != PATCH_TYPE:
        raise UnsupportedMediaType(f"A PATCH carries Content-Type: {PATCH_TYPE}")
