"""Taking an upload, top to bottom: the seed's multipart form and a raw body go the same
way. The writer's right to the participant is checked before any byte is read (and
again once the form is complete); the bytes go to storage as they arrive
(`receiving`); then the finished video is checked (it decodes, its details are
valid), de-duplicated by sha256 per participant of a study, and recorded as ready,
with a preview made in the background when browsers cannot play it. A refused upload
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from services.common.research.auth import credential_id, study_of, written_as
from services.common.web.errors import AppError, Conflict, RequestTimeout, field_error
from services.common.web.schemas import Principal
from services.common.web.timestamps import recorded_at, stored_now
from services.common.web.validation import convert_record, drain
from services.media import multipart, video
from services.media.models import WITHOUT_THUMBNAIL, PreviewState, VlogState, collection
from services.media.receiving import VIDEO_FIELD, IncomingVideo
from services.media.schemas import UploadFields
from services.media.services import get_vlog, sanitize_name
from services.media.settings import MediaSettings
from services.media.slots import UploadSlots
from services.media.storage import VideoStorage

if TYPE_CHECKING:  # previews use the services module; the worker is only passed in
    from services.media.previews import PreviewWorker

Stored = tuple[dict[str, Any], bool]  # the vlog, and whether it existed already


def check_details(fields: dict[str, str]) -> UploadFields:
    """The form's text fields, checked like every other record (the timestamp
    included, so a resumable upload is refused at creation), titles trimmed."""
    details = convert_record(fields, UploadFields)
    recorded_at(details.timestamp or None, stored_now())  # a 422 naming `timestamp` now
    return msgspec.structs.replace(
        details,
        title=details.title.strip(),
        description=details.description.strip(),
        timestamp=details.timestamp or None,
    )


class Uploads:
    """Receives uploads, in the places services.media.slots shares out fairly."""

    def __init__(
        self,
        settings: MediaSettings,
        storage: VideoStorage,
        previews: PreviewWorker,
        slots: UploadSlots | None = None,
    ):
        self.settings = settings
        self.storage = storage
        self.previews = previews
        self.slots = slots or UploadSlots(
            total=settings.max_concurrent_uploads,
            per_writer=settings.uploads_per_writer,
            min_rate=settings.min_upload_rate,
            grace=settings.upload_grace_seconds,
        )

    async def from_form(
        self, chunks: AsyncIterator[bytes], content_type: str, writer: Principal, address: str
    ) -> Stored:
        """The seed's multipart form: text fields and the `video` file part, in any
        order. With a participant token, another participant named before the file is
        refused before its bytes are read, one named after it once the form is
        complete, and nothing is kept either way."""
        async with self._slot(chunks, writer, address) as metered:
            fields: dict[str, str] = {}
            incoming: IncomingVideo | None = None
            try:
                async for part in multipart.parts(metered, content_type):
                    if part.filename is None:
                        fields[part.name] = await part.text()
                        continue
                    if part.name != VIDEO_FIELD:
                        raise field_error(
                            part.name, "is not a field of this form: send the video in `video`"
                        )
                    if incoming is not None:
                        raise field_error(VIDEO_FIELD, "must be given once")
                    written_as(writer, fields)
                    incoming = await self._receive(part.filename, fields, part.data())
                if incoming is None:
                    raise field_error(VIDEO_FIELD, "is required: send the video file in `video`")
                return await self._store(incoming, writer, fields)
            except BaseException:
                await _discard(incoming)
                raise

    async def from_body(
        self,
        chunks: AsyncIterator[bytes],
        filename: str,
        fields: dict[str, str],
        writer: Principal,
        address: str,
    ) -> Stored:
        """A raw body: the video's bytes alone, its details given beside them."""
        async with self._slot(chunks, writer, address) as metered:
            return await self._whole(filename, fields, metered, writer)

    async def from_stored(
        self,
        storage_id: ObjectId,
        length: int,
        filename: str,
        fields: dict[str, str],
        writer: Principal,
    ) -> Stored:
        """A video whose bytes were stored piece by piece (a resumable upload): read
        back once for the same checks as every other upload. Its bytes are all here,
        so it waits for a place among the uploads in progress, for a bounded time."""
        async with self.slots.hold_waiting(writer_key(writer, "stored")) as place:
            stored = self.slots.metered(place, self.storage.read_range(storage_id, 0, length - 1))
            return await self._whole(filename, fields, stored, writer, stored_as=storage_id)

    async def _whole(
        self,
        filename: str,
        fields: dict[str, str],
        data: AsyncIterator[bytes],
        writer: Principal,
        stored_as: ObjectId | None = None,
    ) -> Stored:
        """A video whose details are all known before its bytes: the writer's right
        to the participant checked first, then received and stored."""
        written_as(writer, fields)
        incoming = await self._receive(filename, fields, data, stored_as)
        try:
            return await self._store(incoming, writer, fields)
        except BaseException:
            await _discard(incoming)
            raise

    @contextlib.asynccontextmanager
    async def _slot(
        self, chunks: AsyncIterator[bytes], writer: Principal, address: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A place among the uploads in progress (services.media.slots), and the body's
        chunks counted into its rate. A refusal that comes after the body started is
        followed by reading past the rest of it, so that a client which sends it whole
        before reading still sees the answer (before it, the server's lingering close
        does that)."""
        async with self.slots.hold(writer_key(writer, address)) as place:
            try:
                yield self.slots.metered(place, chunks)
            except AppError as refused:
                if not isinstance(refused, RequestTimeout):  # a trickle is not waited for
                    await drain(chunks)
                raise

    async def _receive(
        self,
        filename: str,
        fields: dict[str, str],
        data: AsyncIterator[bytes],
        stored_as: ObjectId | None = None,
    ) -> IncomingVideo:
        """Every byte of the video into storage, unless it is `stored_as` already (and
        a local copy to decode)."""
        incoming = IncomingVideo(
            storage=self.storage,
            storage_id=stored_as or ObjectId(),
            already_stored=stored_as is not None,
            temp_dir=self.settings.temp_dir,
            limit=self.settings.max_upload_bytes,
            original_name=sanitize_name(filename) or "video",
            # The participant may only be known once the whole form has arrived.
            user_id=fields.get("user_id", ""),
        )
        try:
            async for piece in data:
                await incoming.write(piece)
            await incoming.finish()
        except BaseException:
            await _discard(incoming)
            raise
        return incoming

    async def _store(
        self, incoming: IncomingVideo, writer: Principal, fields: dict[str, str]
    ) -> Stored:
        """The received video checked, de-duplicated and recorded as ready."""
        details = check_details(written_as(writer, fields))
        study_id = study_of(writer)
        now = stored_now()
        # The same participant id in another study is another person.
        same_bytes = {"user_id": details.user_id, "sha256": incoming.sha256, "study_id": study_id}
        existing = await collection().find_one(same_bytes, WITHOUT_THUMBNAIL)
        if existing is not None:
            await incoming.discard()
            return existing, True
        assert incoming.temp_path is not None
        assert incoming.container is not None
        try:
            facts = await asyncio.to_thread(video.probe, incoming.temp_path)
        except video.UndecodableVideo as problem:
            raise field_error(VIDEO_FIELD, f"does not decode as a video: {problem}") from None
        playable = video.is_browser_playable(incoming.container[0], facts.codec)
        ready = {
            "user_id": details.user_id,
            "title": details.title,
            "description": details.description,
            "timestamp": recorded_at(details.timestamp, now),
            "uploaded_at": now,
            "state": VlogState.READY,
            "size": incoming.received,
            "sha256": incoming.sha256,
            "crc32": incoming.crc32,
            "duration": facts.duration,
            "width": facts.width,
            "height": facts.height,
            "fps": facts.fps,
            "codec": facts.codec,
            "thumbnail": facts.thumbnail,
            "preview_state": PreviewState.NOT_NEEDED if playable else PreviewState.PENDING,
        }
        if study_id is not None:
            ready["study_id"] = study_id
        ready["written_by"] = credential_id(writer)
        try:
            await collection().update_one({"_id": incoming.vlog_id}, {"$set": ready})
        except DuplicateKeyError:
            # The same bytes finished uploading a moment ago in another request.
            await incoming.discard()
            existing = await collection().find_one(same_bytes, WITHOUT_THUMBNAIL)
            if existing is None:  # and deleted since: the client may send it again
                raise Conflict(
                    "The same video was being stored and deleted at the same time; send it again"
                ) from None
            return existing, True
        stored = await get_vlog(incoming.vlog_id)
        if playable:
            incoming.remove_temp()
        else:
            self.previews.submit(incoming.vlog_id, incoming.temp_path)
        return stored, False


def writer_key(writer: Principal, address: str) -> str:
    """Whose upload it is, for sharing places: the credential and where it came from."""
    return f"{credential_id(writer)}@{address}"


async def _discard(incoming: IncomingVideo | None) -> None:
    """Removes what a refused upload left; what a failed discard leaves, the periodic
    clean-up removes."""
    if incoming is not None:
        with contextlib.suppress(Exception):
            await incoming.discard()
