"""What the ingest service does with records: store, find, stream, delete.

Sentiments and GPS fixes share every behaviour (`kinds`); summaries live in
`summaries`, the daily rollups that keep them cheap in `rollups`, and the days with
records that let pages skip empty time in `days`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
from bson import ObjectId
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
)

from services.common.research.auth import Role, written_as
from services.common.research.privacy import Disguise
from services.common.web.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    UnsupportedMediaType,
    field_error,
)
from services.common.web.pagination import Order, TimeCursor, with_next_cursor
from services.common.web.schemas import Principal
from services.common.web.timestamps import recorded_at, stored_now
from services.common.web.validation import convert_record, decode_json, is_json_media_type
from services.common.web.windows import BandedReader
from services.ingest.admission import TakingTurns
from services.ingest.days import REGISTER, days_with_data
from services.ingest.inserts import DUPLICATE_KEY, GroupInserter
from services.ingest.kinds import TelemetryKind
from services.ingest.schemas import (
    BatchResult,
    FieldProblem,
    GpsFixIn,
    RecordOutcome,
    SentimentIn,
)

logger = logging.getLogger("emogo.ingest")
STREAM_BATCH_RECORDS = 1000
STREAM_CHUNK_BYTES = 64 * 1024
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


def bounding_box(bbox: str) -> dict[str, Any]:
    """The filter for `minLon,minLat,maxLon,maxLat` (OGC API order). A box whose west
    edge lies east of its east edge crosses the antimeridian."""
    parts = bbox.split(",")
    reason = "must be four numbers minLon,minLat,maxLon,maxLat"
    if len(parts) != 4:
        raise field_error("bbox", reason)
    try:
        west, south, east, north = (float(part) for part in parts)
    except ValueError:
        raise field_error("bbox", reason) from None
    if not all(-180 <= lon <= 180 for lon in (west, east)):
        raise field_error("bbox", "longitudes must lie in [-180, 180]")
    if not -90 <= south <= north <= 90:
        raise field_error("bbox", "latitudes must lie in [-90, 90] with minLat <= maxLat")
    query: dict[str, Any] = {"latitude": {"$gte": south, "$lte": north}}
    if west <= east:
        query["longitude"] = {"$gte": west, "$lte": east}
    else:
        query["$or"] = [{"longitude": {"$gte": west}}, {"longitude": {"$lte": east}}]
    return query


def to_document(
    kind: TelemetryKind,
    record: SentimentIn | GpsFixIn,
    now: datetime,
    max_ahead: timedelta,
    study_id: str | None = None,
) -> dict[str, Any]:
    """The stored form of a validated record, with a server-made id (and the study of a
    participant's token; records without one belong to the study `default`)."""
    fields = msgspec.structs.asdict(record)
    fields["timestamp"] = recorded_at(record.timestamp, now, max_ahead)
    kind.normalise(fields)
    document = {"_id": ObjectId(), **fields, "received_at": now}
    if study_id is not None:
        document["study_id"] = study_id
    return document


async def insert_one(
    kind: TelemetryKind,
    inserter: GroupInserter,
    raw: Any,
    max_ahead: timedelta,
    study_id: str | None = None,
) -> dict[str, Any]:
    """Stores one record; 409 naming the existing id when its client id was seen."""
    record = convert_record(raw, kind.record_in)
    document = to_document(kind, record, stored_now(), max_ahead, study_id)
    await REGISTER.note(kind, [document])
    try:
        await inserter.insert(document)
    except DuplicateKeyError:
        same_client_id = {
            "user_id": document["user_id"],
            "client_id": document["client_id"],
            "study_id": document.get("study_id"),  # None matches the records of `default`
        }
        existing = await kind.collection.find_one(same_client_id, {"_id": 1})
        existing_id = str(existing["_id"]) if existing else None
        raise Conflict(
            f"A {kind.noun} with client_id {document['client_id']!r} already exists for "
            f"participant {document['user_id']!r}",
            extra={"id": existing_id},
        ) from None
    return document


def batch_as_participant(principal: Principal, items: list[Any]) -> list[Any]:
    """A batch as its writer may store it: with a participant token, rows without a
    participant get its own, and a row naming another refuses the whole batch (403,
    naming the rows), so nothing of it is stored."""
    if principal.role != Role.PARTICIPANT:
        return items
    foreign = [
        index
        for index, item in enumerate(items)
        if isinstance(item, dict) and item.get("user_id", principal.user_id) != principal.user_id
    ]
    if foreign:
        raise Forbidden(
            f"A participant token writes participant {principal.user_id!r} only; rows "
            f"{', '.join(map(str, foreign[:20]))}{' ...' if len(foreign) > 20 else ''} name "
            "another, so none of the batch was stored",
            extra={"field": "user_id", "rows": foreign},
        )
    return [written_as(principal, item) for item in items]


def split_batch(body: bytes, content_type: str, max_records: int) -> list[Any]:
    """The records of a batch body: a JSON array, or NDJSON (one object per line).

    A line that is not JSON becomes a FieldError in its place, so it is rejected
    alone. Blank lines are skipped and do not count as records."""
    start = body.lstrip()[:1]
    media_type = content_type.split(";")[0].strip().lower()
    if media_type and media_type not in NDJSON_TYPES and not is_json_media_type(media_type):
        raise UnsupportedMediaType(
            "Send a batch as a JSON array (Content-Type: application/json) or as NDJSON "
            f"(Content-Type: application/x-ndjson), not {content_type!r}"
        )
    if start == b"[":
        items = decode_json(body)
        if not isinstance(items, list):
            raise field_error("body", "must be a JSON array of records")
    elif media_type in NDJSON_TYPES or (media_type != "application/json" and start == b"{"):
        items = []
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(decode_json(line))
                except BadRequest:  # reported for this line alone
                    items.append(field_error("body", f"line {number} is not valid JSON"))
    else:
        raise field_error(
            "body",
            "must be a JSON array of records, or NDJSON (one JSON object per line) "
            "with Content-Type: application/x-ndjson",
        )
    if len(items) > max_records:
        raise field_error(
            "body", f"has {len(items)} records; a batch may carry at most {max_records}"
        )
    return items


# Records one insert of a batch carries (services.ingest.admission: large batches).
INSERT_PIECE = 200


async def insert_batch(
    kind: TelemetryKind,
    items: list[Any],
    max_ahead: timedelta,
    turns: TakingTurns,
    study_id: str | None = None,
) -> BatchResult:
    """Stores every valid record once; reports each one's fate by its index.

    Duplicates are recognised by (user_id, client_id): against what is stored (the
    unique index refuses them) and within the batch itself."""
    now = stored_now()
    outcomes: dict[int, RecordOutcome] = {}
    to_insert: list[tuple[int, dict[str, Any]]] = []
    first_index_of: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for index, raw in enumerate(items):
        try:
            if isinstance(raw, FieldError):
                raise raw
            record = convert_record(raw, kind.record_in)
            document = to_document(kind, record, now, max_ahead, study_id)
        except FieldError as problem:
            errors = [FieldProblem(field=e["field"], reason=e["reason"]) for e in problem.errors]
            outcomes[index] = RecordOutcome(index=index, status="rejected", errors=errors)
            continue
        if document["client_id"] is not None:
            key = (document["user_id"], document["client_id"])
            if key in first_index_of:
                repeats.append((index, first_index_of[key]))
                continue
            first_index_of[key] = index
        to_insert.append((index, document))

    refused: set[int] = set()
    if to_insert:
        async with turns.turn(len(to_insert)):
            await REGISTER.note(kind, [doc for _, doc in to_insert])
            # In pieces: the embedded database holds a collection's other writes while
            # it inserts into it, so a phone's live post waits for one piece, not for
            # a whole flushed queue.
            for start in range(0, len(to_insert), INSERT_PIECE):
                piece = [doc for _, doc in to_insert[start : start + INSERT_PIECE]]
                try:
                    await kind.collection.insert_many(piece, ordered=False)
                except BulkWriteError as failure:
                    errors = failure.details["writeErrors"]
                    if any(e["code"] != DUPLICATE_KEY for e in errors):
                        raise
                    refused |= {start + e["index"] for e in errors}

    already_stored = await _stored_ids(kind, [to_insert[i][1] for i in sorted(refused)])
    for position, (index, document) in enumerate(to_insert):
        if position in refused:
            key = (document["user_id"], document["client_id"])
            outcomes[index] = RecordOutcome(
                index=index, status="duplicate", id=already_stored.get(key)
            )
        else:
            outcomes[index] = RecordOutcome(index=index, status="stored", id=str(document["_id"]))
    for index, first in repeats:
        outcomes[index] = RecordOutcome(index=index, status="duplicate", id=outcomes[first].id)

    results = [outcomes[i] for i in range(len(items))]
    counts = {status: 0 for status in ("stored", "duplicate", "rejected")}
    for outcome in results:
        counts[outcome.status] += 1
    return BatchResult(
        received=len(items),
        stored=counts["stored"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        results=results,
    )


async def _stored_ids(
    kind: TelemetryKind, documents: list[dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """The ids already stored under the (user_id, client_id) of `documents` (one
    batch: all of one study).

    A batch sent again (its answer was lost) is the usual case: its records are stored
    with the same times, so each participant's records between the batch's first and
    last time are read through the `participant_time` index. The embedded database
    answered the direct query (`client_id` `$in`, which only the partial unique index
    serves) by reading the whole collection: 1 s at 100,000 fixes and growing, for
    every batch a reconnecting class sent again (bench/soak.py --storm). A client id
    reused with another time is still looked up directly."""
    if not documents:
        return {}
    study = documents[0].get("study_id")  # None matches the records of `default`
    by_participant: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_participant.setdefault(document["user_id"], []).append(document)
    found: dict[tuple[str, str], str] = {}
    for user_id, theirs in by_participant.items():
        wanted = {document["client_id"] for document in theirs}
        times = [document["timestamp"] for document in theirs]
        # `$lt` past the last time: the embedded database leaves out records equal to a
        # `$lte` bound on an index that has keys after the time (here `_id`).
        span = {"$gte": min(times), "$lt": max(times) + timedelta(milliseconds=1)}
        stored = kind.collection.find(
            {"user_id": user_id, "timestamp": span},
            {"_id": 1, "client_id": 1, "study_id": 1},
        )
        async for record in stored:
            if record.get("client_id") in wanted and record.get("study_id") == study:
                found[(user_id, record["client_id"])] = str(record["_id"])
        elsewhere = [c for c in wanted if (user_id, c) not in found]
        if elsewhere:
            query = {"user_id": user_id, "client_id": {"$in": elsewhere}, "study_id": study}
            async for record in kind.collection.find(query, {"_id": 1, "client_id": 1}):
                found[(user_id, record["client_id"])] = str(record["_id"])
    return found


async def get_one(
    kind: TelemetryKind, record_id: str, scope: dict[str, Any], disguise: Disguise | None
) -> Any:
    """A record by id, if it also matches `scope` (a participant's own only)."""
    if not ObjectId.is_valid(record_id):
        raise field_error("id", "must be a 24-character hexadecimal record id")
    document = await kind.collection.find_one({"_id": ObjectId(record_id), **scope})
    if document is None:
        raise NotFound(f"No {kind.noun} with id {record_id}")
    if disguise is not None:
        [document] = await disguise.shown([document])
    return kind.to_wire(document)


async def banded_reader(
    kind: TelemetryKind,
    query: dict[str, Any],
    max_ahead: timedelta,
    projection: dict[str, Any] | None = None,
) -> BandedReader:
    """Reads `query`'s records a time band at a time (services.common.web.windows)."""
    user_id = query.get("user_id")
    days = await days_with_data(kind, user_id if isinstance(user_id, str) else None)
    # No record is stored with a time further ahead than writes accept (plus a margin
    # for a setting lowered since).
    now = stored_now()
    ceiling = now + max_ahead + timedelta(days=1)
    return BandedReader(
        kind.collection, query, ceiling, days, projection, now=now + timedelta(minutes=1)
    )


async def list_page(
    kind: TelemetryKind,
    query: dict[str, Any],
    order: Order,
    limit: int,
    cursor: str | None,
    max_ahead: timedelta,
    disguise: Disguise | None = None,
) -> tuple[list[Any], str | None]:
    """One page sorted by time, and the cursor of the next page when there is one
    (one record more than the page is read to know)."""
    position = TimeCursor.decode(cursor, order) if cursor is not None else None
    reader = await banded_reader(kind, query, max_ahead)
    documents, next_cursor = with_next_cursor(
        await reader.page(order, limit + 1, position), order, limit
    )
    if disguise is not None:
        documents = await disguise.shown(documents)
    return [kind.to_wire(d) for d in documents], next_cursor


async def count(kind: TelemetryKind, query: dict[str, Any]) -> int:
    return await kind.collection.count_documents(query)


async def stream_ndjson(
    kind: TelemetryKind, query: dict[str, Any], max_ahead: timedelta, disguise: Disguise | None
) -> AsyncIterator[bytes]:
    """Every matching record, oldest first, one JSON object per line.

    Reads a band of days at a time, in cursor batches, and sends ~64 KiB chunks:
    memory stays flat however many records match."""
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    reader = await banded_reader(kind, query, max_ahead)
    async for document in reader.walk(STREAM_BATCH_RECORDS):
        if disguise is not None:  # a viewer of a protected study
            await disguise.learn_from([document])
            document = disguise.record(document)
        encoder.encode_into(kind.to_wire(document), buffer, -1)
        buffer += b"\n"
        if len(buffer) >= STREAM_CHUNK_BYTES:
            if disguise:
                await disguise.flush()
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        if disguise:
            await disguise.flush()
        yield bytes(buffer)
