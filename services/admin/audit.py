"""The audit trail's store: entries the gateway sends are appended to one hash chain
(services.common.audit), and the admin reads, downloads and verifies them.

Appending is safe with any number of admin workers: each batch is chained after the
newest stored entry and inserted in order; `seq` is unique, so a worker that lost a
race to another one's batch is refused at its first entry, reads the new end of the
chain and chains the rest again. No route changes or deletes an entry.

    python -m services.admin.audit verify    # checks the whole chain (MONGODB_URI)
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Body, QueryParameter
from litestar.response import Stream
from pymongo.errors import BulkWriteError

from services.admin.access import ADMIN_ONLY
from services.admin.models import AuditRecord
from services.common.audit import (
    FIELDS,
    GENESIS,
    AuditEntry,
    ChainCheck,
    StoredAuditEntry,
    chained,
    verify,
)
from services.common.errors import ServiceUnavailable, field_error
from services.common.filters import time_span
from services.common.openapi import NDJSON_MEDIA_TYPE, error_responses
from services.common.pagination import (
    DEFAULT_PAGE_SIZE,
    CursorParameter,
    PageSize,
    decode_cursor,
    encode_cursor,
    next_page_headers,
)
from services.common.schemas import WireStruct

DUPLICATE_KEY = 11000
# Entries one call may send; the gateway sends fewer.
MOST_PER_CALL = 1000
# Races lost to other workers before a batch gives up (each loss means another batch
# was stored, so this is only reached under a flood).
APPEND_ATTEMPTS = 50
COLUMNS = ("seq", *FIELDS, "prev_hash", "hash")


async def append(entries: list[AuditEntry]) -> None:
    """Chains `entries` after the newest stored entry and stores them, in order."""
    collection = AuditRecord.get_pymongo_collection()
    pending = entries
    for _ in range(APPEND_ATTEMPTS):
        if not pending:
            return
        last = await collection.find_one({}, {"seq": 1, "hash": 1}, sort=[("seq", -1)])
        last_seq, last_hash = (last["seq"], last["hash"]) if last else (0, GENESIS)
        try:
            await collection.insert_many(chained(pending, last_seq, last_hash), ordered=True)
            return
        except BulkWriteError as failure:
            errors = failure.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            pending = pending[failure.details.get("nInserted", 0) :]
    raise ServiceUnavailable("The audit trail is busy; send the entries again")


async def in_order() -> AsyncIterator[dict[str, Any]]:
    async for document in AuditRecord.get_pymongo_collection().find({}).sort("seq", 1):
        yield document


class Stored(WireStruct):
    stored: int


AuditFilter = Annotated[str | None, QueryParameter(max_length=200)]


def _query(
    since: str | None,
    until: str | None,
    credential_id: str | None,
    role: str | None,
    action: str | None,
    study_id: str | None,
    user_id: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    query: dict[str, Any] = {}
    span = time_span(since, until)
    if span:
        query["time"] = span["timestamp"]
    for field, value in (
        ("credential_id", credential_id),
        ("role", role),
        ("action", action),
        ("study_id", study_id),
        ("participants", user_id),
        ("request_id", request_id),
    ):
        if value is not None:
            query[field] = value
    return query


def _entry(document: dict[str, Any]) -> StoredAuditEntry:
    return msgspec.convert(
        {k: v for k, v in document.items() if k != "_id"},
        StoredAuditEntry,
        from_attributes=False,
    )


def _csv_row(document: dict[str, Any]) -> list[Any]:
    row = []
    for column in COLUMNS:
        value = document.get(column)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, list):
            value = " ".join(value)
        elif isinstance(value, dict):
            value = msgspec.json.encode(value).decode()
        row.append("" if value is None else value)
    return row


class AuditController(Controller):
    """The audit trail, for the admin: appended by the gateway, read and verified here."""

    path = "/api/audit"
    tags = ["audit"]
    guards = ADMIN_ONLY

    @post(
        "/entries",
        operation_id="appendAuditEntries",
        summary="Append entries to the audit trail (the gateway sends what it recorded)",
        responses=error_responses(401, 403, 503),
        include_in_schema=False,
    )
    async def append_entries(
        self, data: Annotated[list[AuditEntry], Body(max_length=MOST_PER_CALL)]
    ) -> Stored:
        await append(data)
        return Stored(stored=len(data))

    @get(
        "/",
        operation_id="listAuditEntries",
        summary="Audit entries in the order they were recorded, filtered, a page at a time",
        responses=error_responses(401, 403),
    )
    async def listing(
        self,
        since: AuditFilter = None,
        until: AuditFilter = None,
        credential_id: AuditFilter = None,
        role: AuditFilter = None,
        action: AuditFilter = None,
        study_id: AuditFilter = None,
        user_id: AuditFilter = None,
        request_id: AuditFilter = None,
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> Response[list[StoredAuditEntry]]:
        query = _query(since, until, credential_id, role, action, study_id, user_id, request_id)
        if cursor is not None:
            (after,) = decode_cursor(cursor, tuple[int])
            if after < 0:
                raise field_error("cursor", "is not a cursor this API handed out")
            query["seq"] = {"$gt": after}
        found = AuditRecord.get_pymongo_collection().find(query).sort("seq", 1).limit(limit + 1)
        documents = await found.to_list()
        next_cursor = None
        if len(documents) > limit:
            documents = documents[:limit]
            next_cursor = encode_cursor((documents[-1]["seq"],))
        params = {
            "since": since,
            "until": until,
            "credential_id": credential_id,
            "role": role,
            "action": action,
            "study_id": study_id,
            "user_id": user_id,
            "request_id": request_id,
            "limit": limit,
        }
        return Response(
            [_entry(document) for document in documents],
            headers=next_page_headers("/api/audit", params, next_cursor),
        )

    @get(
        "/verify",
        operation_id="verifyAuditTrail",
        summary="Check the whole chain: names the first entry that was removed or changed",
        responses=error_responses(401, 403),
    )
    async def check(self) -> ChainCheck:
        return await verify(in_order())

    @get(
        "/download.ndjson",
        operation_id="downloadAuditTrailNdjson",
        summary="The filtered audit trail as NDJSON, every entry",
        media_type=NDJSON_MEDIA_TYPE,
        responses=error_responses(401, 403),
    )
    async def download_ndjson(
        self,
        since: AuditFilter = None,
        until: AuditFilter = None,
        credential_id: AuditFilter = None,
        role: AuditFilter = None,
        action: AuditFilter = None,
        study_id: AuditFilter = None,
        user_id: AuditFilter = None,
        request_id: AuditFilter = None,
    ) -> Stream:
        query = _query(since, until, credential_id, role, action, study_id, user_id, request_id)
        return _download(query, as_csv=False)

    @get(
        "/download.csv",
        operation_id="downloadAuditTrailCsv",
        summary="The filtered audit trail as CSV, every entry",
        media_type="text/csv",
        responses=error_responses(401, 403),
    )
    async def download_csv(
        self,
        since: AuditFilter = None,
        until: AuditFilter = None,
        credential_id: AuditFilter = None,
        role: AuditFilter = None,
        action: AuditFilter = None,
        study_id: AuditFilter = None,
        user_id: AuditFilter = None,
        request_id: AuditFilter = None,
    ) -> Stream:
        query = _query(since, until, credential_id, role, action, study_id, user_id, request_id)
        return _download(query, as_csv=True)


def _download(query: dict[str, Any], as_csv: bool) -> Stream:
    """Every entry matching `query`, in order, streamed."""

    async def lines() -> AsyncIterator[bytes]:
        if as_csv:
            yield _csv_line(list(COLUMNS))
        found = AuditRecord.get_pymongo_collection().find(query).sort("seq", 1)
        async for document in found:
            if as_csv:
                yield _csv_line(_csv_row(document))
            else:
                yield msgspec.json.encode(_entry(document)) + b"\n"

    name = "audit.csv" if as_csv else "audit.ndjson"
    return Stream(
        lines(),
        # Litestar adds `; charset=utf-8` to a text type.
        media_type="text/csv" if as_csv else NDJSON_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()


async def _verify_command() -> int:
    from pymongo import AsyncMongoClient

    from services.admin.settings import load_settings

    settings = load_settings()
    client: AsyncMongoClient = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        collection = client[settings.db_name][AuditRecord.Settings.name]

        async def documents() -> AsyncIterator[dict[str, Any]]:
            async for document in collection.find({}).sort("seq", 1):
                yield document

        result = await verify(documents())
    finally:
        await client.close()
    if result.ok:
        print(f"audit trail intact: {result.entries} entries")
        return 0
    print(f"audit trail broken at entry {result.first_broken_seq}: {result.reason}")
    return 1


if __name__ == "__main__":
    if sys.argv[1:] != ["verify"]:
        sys.exit("usage: python -m services.admin.audit verify")
    sys.exit(asyncio.run(_verify_command()))
