"""What media's handlers are given besides their path, query and body, registered once
on the app: the settings, the video storage, the upload paths and the caller."""

from __future__ import annotations

from services.common.research.deps import CALLER_DEPENDENCIES
from services.common.web.given import Given, from_state
from services.media.settings import MediaSettings
from services.media.storage import VideoStorage
from services.media.tus import Resumable
from services.media.uploads import Uploads

Settings = Given[MediaSettings]
Storage = Given[VideoStorage]
ResumableUploads = Given[Resumable]
UploadPaths = Given[Uploads]


DEPENDENCIES = {
    **CALLER_DEPENDENCIES,
    "settings": from_state("settings"),
    "storage": from_state("storage"),
    "resumable": from_state("resumable"),
    "uploads": from_state("uploads"),
}
