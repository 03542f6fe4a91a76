"""What media's handlers are given besides their path, query and body, registered once
on the app: the settings, the video storage, the upload paths and the caller."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from services.common.research.deps import CALLER_DEPENDENCIES
from services.common.web.given import Given
from services.media.settings import MediaSettings
from services.media.storage import VideoStorage
from services.media.tus import Resumable
from services.media.uploads import Uploads

Settings = Given[MediaSettings]
Storage = Given[VideoStorage]
ResumableUploads = Given[Resumable]
UploadPaths = Given[Uploads]


async def provide_settings(state: State) -> MediaSettings:
    settings: MediaSettings = state.settings
    return settings


async def provide_storage(state: State) -> VideoStorage:
    storage: VideoStorage = state.storage
    return storage


async def provide_resumable(state: State) -> Resumable:
    resumable: Resumable = state.resumable
    return resumable


async def provide_uploads(state: State) -> Uploads:
    uploads: Uploads = state.uploads
    return uploads


DEPENDENCIES = {
    **CALLER_DEPENDENCIES,
    "settings": Provide(provide_settings),
    "storage": Provide(provide_storage),
    "resumable": Provide(provide_resumable),
    "uploads": Provide(provide_uploads),
}
