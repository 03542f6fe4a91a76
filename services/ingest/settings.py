"""Settings of the ingest service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from services.common.runtime.settings import (
    Environment,
    ServiceSettings,
    common_fields,
    read_service_token,
)

# The handler-level body limit of batch endpoints; EMOGO_INGEST_MAX_BATCH_BYTES can
# only lower it. (Litestar needs an explicit limit per handler.)
BATCH_BODY_CEILING = 64 * 1024 * 1024


class IngestSettings(ServiceSettings, frozen=True, kw_only=True):
    # Records one batch request may carry, and its body size in bytes.
    max_batch_records: int
    max_batch_bytes: int
    # How far ahead of the server's clock a record's timestamp may be.
    max_seconds_ahead: float
    # The gateway's credential: only it relays posts together, each with its own
    # credential (POST <kind>/posts).
    service_token: str

    @property
    def max_ahead(self) -> timedelta:
        """How far ahead of the server's clock a record's time may be."""
        return timedelta(seconds=self.max_seconds_ahead)


def load_settings(environ: Mapping[str, str] | None = None) -> IngestSettings:
    env = Environment(environ)
    fields = common_fields("ingest", env)
    return IngestSettings(
        **fields,  # type: ignore[arg-type]  # fields checked one by one by common_fields
        max_batch_records=env.integer("EMOGO_INGEST_MAX_BATCH_RECORDS", 1000, 1, 100_000),
        max_batch_bytes=env.integer(
            "EMOGO_INGEST_MAX_BATCH_BYTES", 8 * 1024 * 1024, 1024, BATCH_BODY_CEILING
        ),
        max_seconds_ahead=env.number("EMOGO_INGEST_MAX_SECONDS_AHEAD", 86400.0, 0.0, 366 * 86400),
        service_token=read_service_token(env, fields["credentials"]),  # type: ignore[arg-type]  # fields checked one by one by common_fields
    )
