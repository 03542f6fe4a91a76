"""The two kinds of telemetry: sentiments and GPS fixes share every behaviour; a
`TelemetryKind` holds what differs (document, wire types, how a record is normalised)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from beanie import Document
from pymongo.asynchronous.collection import AsyncCollection

from services.common.research.studies import DEFAULT_STUDY
from services.common.web.errors import field_error
from services.ingest.models import GpsFix, Sentiment
from services.ingest.schemas import GpsFixIn, GpsFixOut, SentimentIn, SentimentOut


def _normalise_sentiment(fields: dict[str, Any]) -> None:
    emotion = fields["emotion"].strip().lower()
    if not emotion:
        raise field_error("emotion", "must not be blank")
    fields["emotion"] = emotion


def _normalise_gps_fix(fields: dict[str, Any]) -> None:
    # iOS reports -1 when it does not know the speed or heading.
    for name in ("speed", "heading"):
        if fields[name] is not None and fields[name] < 0:
            fields[name] = None


@dataclass(frozen=True)
class TelemetryKind:
    key: str  # its name in rollups and exports
    noun: str
    noun_plural: str
    # As in operation ids: createSentiment, listSentiments.
    operation_name: str
    operation_name_plural: str
    created_message: str
    document: type[Document]
    record_in: type[SentimentIn | GpsFixIn]
    record_out: type[SentimentOut | GpsFixOut]
    normalise: Callable[[dict[str, Any]], None]

    @property
    def collection(self) -> AsyncCollection:
        return self.document.get_pymongo_collection()

    def to_wire(self, document: dict[str, Any]) -> Any:
        document["_id"] = str(document["_id"])
        # Records of the study `default` carry none (they predate studies, or came with
        # a global token).
        document["study_id"] = document.get("study_id") or DEFAULT_STUDY
        return msgspec.convert(document, self.record_out)


SENTIMENTS = TelemetryKind(
    key="sentiments",
    noun="sentiment",
    noun_plural="sentiments",
    operation_name="Sentiment",
    operation_name_plural="Sentiments",
    created_message="Sentiment created successfully",
    document=Sentiment,
    record_in=SentimentIn,
    record_out=SentimentOut,
    normalise=_normalise_sentiment,
)
GPS_FIXES = TelemetryKind(
    key="gps",
    noun="GPS fix",
    noun_plural="GPS fixes",
    operation_name="GpsFix",
    operation_name_plural="GpsFixes",
    created_message="GPS coordinate created successfully",
    document=GpsFix,
    record_in=GpsFixIn,
    record_out=GpsFixOut,
    normalise=_normalise_gps_fix,
)
KINDS = (SENTIMENTS, GPS_FIXES)
