"""Wire types of the gateway."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from services.common.web.schemas import WireStruct


class ServiceHealth(WireStruct, omit_defaults=True):
    status: str  # "up" or "down"
    database: str  # "connected", "disconnected" or "unknown" (service unreachable)
    latency_ms: float | None = None
    error: str | None = None
    # With several replicas (EMOGO_<SERVICE>_URL lists more than one URL).
    replicas: int | None = None
    replicas_up: int | None = None


class GatewayHealth(WireStruct):
    """The seed's health keys, plus the state of each service."""

    status: str
    database: str
    timestamp: datetime
    services: dict[str, ServiceHealth]


class DayCell(WireStruct, omit_defaults=True):
    """What arrived from one participant on one local day (omitted: none)."""

    sentiments: int = 0
    gps_hours: int = 0
    vlogs: int = 0


class KindCompliance(WireStruct):
    """What a participant delivered of one kind over their counted days, against what
    their study expects (no expectation: `expected` and `rate` are null)."""

    delivered: float
    expected: float | None
    rate: float | None  # delivered / expected, at most 1


class ParticipantCompliance(WireStruct):
    study_id: str
    user_id: str
    # "withdrawn" participants are never counted as stopped.
    status: Literal["active", "withdrawn"]
    time_zone: str
    # Local days, "YYYY-MM-DD": when they enrolled (null: sent data without enrolling,
    # as with the global tokens), their first day (enrolment or first record, the
    # earlier) and the day of their last record (null: none yet).
    enrolled_on: str | None
    first_day: str
    last_day: str | None
    last_sentiment: datetime | None
    last_gps_fix: datetime | None
    last_vlog: datetime | None
    # Whole local days without any record since the last one (none yet: since they
    # enrolled); today is not counted.
    silent_days: int
    stopped: bool  # silent_days reached the study's silent_after_days
    # Whole local days from the first record's to yesterday: what the rates cover.
    days_counted: int
    sentiments: KindCompliance
    gps_hours: KindCompliance
    vlogs: KindCompliance
    rate: float | None  # the mean of the rates the study has expectations for
    days: dict[str, DayCell]


class StudyCompliance(WireStruct):
    study_id: str
    time_zone: str
    today: str
    expectations: dict[str, float | None]
    silent_after_days: int
    stopped: list[str]  # the participants who stopped reporting


class ComplianceReport(WireStruct):
    generated_at: datetime
    studies: list[StudyCompliance]
    # Those who stopped reporting first (longest silent first), then by study and id.
    participants: list[ParticipantCompliance]
