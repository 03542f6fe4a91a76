"""Wire types of research studies: studies, their participants and enrolment, viewer
tokens, daily notices, withdrawal (apart from the companion app's contract in
services.admin.companion.schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.admin.research.receipts import DeletionReceipt
from services.common.research.grid import LARGEST_GRID_M, SMALLEST_GRID_M
from services.common.research.studies import StudyId
from services.common.web.schemas import (
    END_OF_TEXT,
    ONE_LINE_PATTERN,
    ParticipantId,
    WireStruct,
    worded,
)

StudyName = Annotated[str, Meta(min_length=1, max_length=200, pattern=ONE_LINE_PATTERN)]
TimeZoneName = Annotated[
    str,
    Meta(min_length=1, max_length=64, description="An IANA time zone.", examples=["Asia/Taipei"]),
]


class Expectations(WireStruct, forbid_unknown_fields=True):
    """What a study asks of each participant; a figure left out is not expected."""

    sentiments_per_day: Annotated[float, Meta(ge=0, le=1000)] | None = None
    gps_hours_per_day: Annotated[float, Meta(ge=0, le=24)] | None = None
    vlogs_per_week: Annotated[float, Meta(ge=0, le=1000)] | None = None


SilentAfterDays = Annotated[
    int,
    Meta(
        ge=1,
        le=365,
        description="Whole local days without any record after which a participant has "
        "stopped reporting.",
    ),
]
WebhookUrl = Annotated[
    str,
    Meta(
        max_length=2000,
        pattern=worded(
            r"^(https?://[^\s]+)?" + END_OF_TEXT, 'an http(s) URL without spaces, or ""'
        ),
        description="Where the daily notice of newly silent participants is POSTed "
        '(http or https); "" removes it.',
    ),
]

GpsGridMetres = Annotated[
    int,
    Meta(
        ge=0,
        le=LARGEST_GRID_M,
        description=f"Viewers see GPS fixes rounded to a grid of this many metres "
        f"({SMALLEST_GRID_M}-{LARGEST_GRID_M}; 0: exact fixes).",
        examples=[1000],
    ),
]
PSEUDONYMS_DESCRIPTION = (
    "Viewers see each participant as a stable pseudonym of this study (anon-...), in "
    "every page, API and export; the admin still sees real ids."
)
Pseudonyms = Annotated[bool, Meta(description=PSEUDONYMS_DESCRIPTION)]


class StudyIn(WireStruct, forbid_unknown_fields=True):
    study_id: StudyId
    name: StudyName
    # Left out: the deployment's EMOGO_DISPLAY_TIMEZONE.
    time_zone: TimeZoneName | None = None
    expectations: Expectations = msgspec.field(default_factory=Expectations)
    silent_after_days: SilentAfterDays = 2
    webhook_url: WebhookUrl = ""
    pseudonyms: Pseudonyms = False
    gps_grid_m: GpsGridMetres = 0


class StudyUpdate(WireStruct, forbid_unknown_fields=True):
    name: StudyName | None = None
    time_zone: TimeZoneName | None = None
    expectations: Expectations | None = None
    silent_after_days: SilentAfterDays | None = None
    webhook_url: WebhookUrl | None = None
    pseudonyms: Pseudonyms | None = None
    gps_grid_m: GpsGridMetres | None = None


class StudyView(WireStruct):
    study_id: str
    name: str
    time_zone: str | None
    # The zone its days are counted in: its own, else EMOGO_DISPLAY_TIMEZONE.
    days_time_zone: str
    status: Literal["active", "closed"]
    expectations: Expectations
    silent_after_days: int
    # Only where notices go (scheme and host): the rest of a webhook URL is often a secret.
    webhook: str | None
    # What its viewers are not shown: real participant ids, fixes finer than the grid.
    pseudonyms: bool
    gps_grid_m: int | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


MAX_ENROLLED_AT_ONCE = 500


class ParticipantsIn(WireStruct, forbid_unknown_fields=True):
    """Either the ids to enrol, or how many pseudonymous ids (P001, P002, ...) to make."""

    user_ids: Annotated[list[ParticipantId], Meta(min_length=1, max_length=500)] | None = None
    count: Annotated[int, Meta(ge=1, le=MAX_ENROLLED_AT_ONCE)] | None = None


class IssuedCode(WireStruct):
    """A participant's enrolment code, shown once: to print, read out or show as QR."""

    user_id: str
    code: str
    code_expires_at: datetime
    # emogo://enrol?study=...&code=..., what the QR code holds.
    enrol_uri: str
    qr_svg: str
    # The same as a data:image/png;base64 URI.
    qr_png: str


class IssuedCodes(WireStruct):
    study_id: str
    participants: list[IssuedCode]


CodeState = Literal["none", "pending", "used", "expired"]


class ParticipantView(WireStruct):
    # To a viewer of a pseudonymous study: the pseudonym.
    user_id: str
    status: Literal["active", "withdrawn"]
    created_at: datetime
    # none, pending (not used yet), used (exchanged for a token) or expired.
    code: CodeState
    has_token: bool
    code_expires_at: datetime | None = None
    enrolled_at: datetime | None = None
    withdrawn_at: datetime | None = None
    # When the withdrawal also deleted their data: the signed receipt of what went.
    deletion_receipt: DeletionReceipt | None = None
    # To the admin, in a pseudonymous study: what its viewers call this participant.
    pseudonym: str | None = None


class Withdrawal(WireStruct, forbid_unknown_fields=True):
    # Also delete everything they sent, in every service (a signed receipt says what).
    delete_data: bool = False


class Enrolment(WireStruct, forbid_unknown_fields=True):
    study_id: StudyId
    code: Annotated[str, Meta(min_length=1, max_length=40)]


class Enrolled(WireStruct):
    """The participant's own credential: send it as `Authorization: Bearer <token>`."""

    token: str
    study_id: str
    user_id: str
    token_id: str
    token_type: str = "Bearer"  # noqa: S105 (the scheme's name, not a secret)


class ViewerTokenIn(WireStruct, forbid_unknown_fields=True):
    name: StudyName
    study_ids: Annotated[list[StudyId], Meta(min_length=1, max_length=100)]


class ViewerTokenView(WireStruct):
    token_id: str
    name: str
    study_ids: list[str]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ViewerTokenIssued(ViewerTokenView, kw_only=True):
    """As listed, plus the token itself: shown this once, stored only as a hash."""

    token: str


class NoticeAttempt(WireStruct):
    at: datetime
    outcome: str  # "delivered", "HTTP 500", "ConnectError", ...
    retry_in_seconds: float | None = None


class NoticeView(WireStruct):
    day: str  # the study's local day
    status: Literal["pending", "delivered", "failed", "nothing"]
    newly_stopped: list[str]
    stopped: list[str]
    attempts: list[NoticeAttempt]
    payload: dict[str, Any]  # what is POSTed to the webhook
