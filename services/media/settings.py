"""Settings of the media service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.common.runtime.settings import Environment, ServiceSettings, common_fields, temp_dir

# The handler-level body limit of uploads; EMOGO_MEDIA_MAX_UPLOAD_BYTES can only lower
# it. (Litestar needs an explicit limit per handler.)
UPLOAD_BODY_CEILING = 8 * 1024 * 1024 * 1024
MiB = 1024 * 1024


class MediaSettings(ServiceSettings, frozen=True, kw_only=True):
    # Largest video one upload may carry.
    max_upload_bytes: int
    # Uploads processed at once; each keeps a temporary copy on local disk for
    # decoding, so this bounds that disk use to max_upload_bytes times this.
    max_concurrent_uploads: int
    # One writer's uploads at once (a credential at an address), and the rate (bytes a
    # second) an upload must keep up to keep its place while others wait for one
    # (services.media.slots).
    uploads_per_writer: int
    min_upload_rate: int
    upload_grace_seconds: float
    # Resumable uploads one writer may have open, and the bytes they may reserve.
    open_resumable_per_writer: int
    resumable_bytes_per_writer: int
    temp_dir: Path
    # Largest height of a preview rendition (H.264) made for unplayable videos.
    preview_max_height: int
    # Uploads still incomplete after this long are removed with their bytes.
    stale_upload_seconds: float
    # How long an unfinished resumable upload is kept after its last byte arrived.
    resumable_upload_seconds: float


def load_settings(environ: Mapping[str, str] | None = None) -> MediaSettings:
    env = Environment(environ)
    fields = common_fields("media", env)
    data_dir: Path = fields["data_dir"]  # type: ignore[assignment]  # fields checked one by one by common_fields
    return MediaSettings(
        **fields,  # type: ignore[arg-type]  # fields checked one by one by common_fields
        max_upload_bytes=env.integer(
            "EMOGO_MEDIA_MAX_UPLOAD_BYTES", 512 * MiB, 1024, UPLOAD_BODY_CEILING
        ),
        max_concurrent_uploads=env.integer("EMOGO_MEDIA_MAX_CONCURRENT_UPLOADS", 4, 1, 64),
        uploads_per_writer=env.integer("EMOGO_MEDIA_UPLOADS_PER_WRITER", 2, 1, 64),
        min_upload_rate=env.integer("EMOGO_MEDIA_MIN_UPLOAD_RATE", 32 * 1024, 0, 1024 * MiB),
        upload_grace_seconds=env.number("EMOGO_MEDIA_UPLOAD_GRACE_SECONDS", 10.0, 0.0, 3600.0),
        open_resumable_per_writer=env.integer(
            "EMOGO_MEDIA_OPEN_RESUMABLE_PER_WRITER", 8, 1, 10_000
        ),
        resumable_bytes_per_writer=env.integer(
            "EMOGO_MEDIA_RESUMABLE_BYTES_PER_WRITER", 4 * 512 * MiB, MiB, 1024 * 1024 * MiB
        ),
        temp_dir=temp_dir("media", env, data_dir),
        preview_max_height=env.integer("EMOGO_MEDIA_PREVIEW_MAX_HEIGHT", 720, 144, 2160),
        stale_upload_seconds=env.number(
            "EMOGO_MEDIA_STALE_UPLOAD_SECONDS", 3600.0, 60.0, 7 * 86400
        ),
        resumable_upload_seconds=env.number(
            "EMOGO_MEDIA_RESUMABLE_UPLOAD_SECONDS", 86400.0, 60.0, 30 * 86400
        ),
    )
