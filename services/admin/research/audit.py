"""The audit trail's routes: the gateway appends the entries it recorded to one hash
chain (services.common.research.audit, stored by services.admin.research.trail), and
the admin reads, downloads and verifies them. No route changes or deletes an entry.

    python -m services.admin.research.audit verify    # checks the whole chain (MONGODB_URI)
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
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from litestar.response import Stream

from services.admin.access import ADMIN_ONLY
from services.admin.models import AuditBlock
from services.admin.research.trail import append, blocks, in_order
from services.common.research.audit import (
    FIELDS,
    AuditBatch,
    ChainCheck,
    StoredAuditEntry,
    verify,
)
from services.common.research.auth import from_gateway
from services.common.research.filters import time_span
from services.common.web.errors import field_error
from services.common.web.openapi import NDJSON_MEDIA_TYPE, documented_body, error_responses
from services.common.web.pagination import (
    DEFAULT_PAGE_SIZE,
    CursorParameter,
    PageSize,
    decode_cursor,
    encode_cursor,
    next_page_headers,
)
from services.common.web.schemas import WireStruct
from services.common.web.validation import read_record

# Entries one call may send; the gateway sends fewer.
MOST_PER_CALL = 1000
COLUMNS = ("seq", *FIELDS, "prev_hash", "hash")


class Stored(WireStruct):
    stored: int


AuditFilter = Annotated[str | None, QueryParameter(max_length=200)]


class EntryFilter:
    """Which entries a listing or download wants, by the entry's fields; the blocks
    that may hold them are found by the fields blocks index."""

    def __init__(self, params: dict[str, str | None]) -> None:
        self.params = {name: value for name, value in params.items() if value is not None}
        span = time_span(params.get("since"), params.get("until")).get("timestamp", {})
        self.since, self.until = span.get("$gte"), span.get("$lt")
        self.equal = {
            field: self.params[name]
            for name, field in (
                ("credential_id", "credential_id"),
                ("role", "role"),
                ("action", "action"),
                ("study_id", "study_id"),
                ("request_id", "request_id"),
            )
            if name in self.params
        }
        self.user_id = self.params.get("user_id")

    def blocks(self, after: int) -> dict[str, Any]:
        # A block holds at most MOST_PER_CALL entries: the range on `_id` (the first
        # entry's seq) lets the database skip to the right blocks by their index.
        query: dict[str, Any] = {
            "_id": {"$gt": after - MOST_PER_CALL},
            "last_seq": {"$gt": after},
        }
        if "credential_id" in self.equal:
            query["credential_ids"] = self.equal["credential_id"]
        if self.user_id is not None:
            query["participants"] = self.user_id
        return query

    def matches(self, entry: dict[str, Any]) -> bool:
        if any(entry.get(field) != value for field, value in self.equal.items()):
            return False
        if self.user_id is not None and self.user_id not in entry.get("participants", []):
            return False
        if self.since is not None and entry["time"] < self.since:
            return False
        return self.until is None or entry["time"] < self.until

    async def entries(self, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The wanted entries after `seq` `after`, in order."""
        async for entry in in_order(self.blocks(after)):
            if entry["seq"] > after and self.matches(entry):
                yield entry


async def provide_entry_filter(
    since: AuditFilter = None,
    until: AuditFilter = None,
    credential_id: AuditFilter = None,
    role: AuditFilter = None,
    action: AuditFilter = None,
    study_id: AuditFilter = None,
    user_id: AuditFilter = None,
    request_id: AuditFilter = None,
) -> EntryFilter:
    return EntryFilter(
        {
            "since": since,
            "until": until,
            "credential_id": credential_id,
            "role": role,
            "action": action,
            "study_id": study_id,
            "user_id": user_id,
            "request_id": request_id,
        }
    )


def _entry(document: dict[str, Any]) -> StoredAuditEntry:
    return msgspec.convert(document, StoredAuditEntry)


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


class AuditAppendController(Controller):
    """Where the gateway appends what it recorded; for no one else."""

    path = "/api/audit/entries"
    tags = ["audit"]
    include_in_schema = False

    @post(
        "/",
        operation_id="appendAuditEntries",
        summary="Append entries to the audit trail (the gateway sends what it recorded)",
        guards=[from_gateway("appends to the audit trail")],
        operation_class=documented_body(AuditBatch),
        responses=error_responses(401, 403, 503),
    )
    async def append_entries(self, request: Request) -> Stored:
        data = await read_record(request, AuditBatch)  # by hand: docs/adr/0005
        if not data.entries:
            return Stored(stored=0)
        if len(data.entries) > MOST_PER_CALL:
            raise field_error("entries", f"at most {MOST_PER_CALL} entries per call")
        await append(data.batch_id, data.entries)
        return Stored(stored=len(data.entries))


class AuditController(Controller):
    """The audit trail, for the admin: appended by the gateway, read and verified here."""

    path = "/api/audit"
    tags = ["audit"]
    guards = ADMIN_ONLY
    dependencies = {"wanted": Provide(provide_entry_filter)}

    @get(
        "/",
        operation_id="listAuditEntries",
        summary="Audit entries in the order they were recorded, filtered, a page at a time",
        responses=error_responses(401, 403),
    )
    async def listing(
        self,
        wanted: NamedDependency[EntryFilter],
        limit: PageSize = DEFAULT_PAGE_SIZE,
        cursor: CursorParameter = None,
    ) -> Response[list[StoredAuditEntry]]:
        after = 0
        if cursor is not None:
            (after,) = decode_cursor(cursor, tuple[int])
            if after < 0:
                raise field_error("cursor", "is not a cursor this API handed out")
        page: list[dict[str, Any]] = []
        async for entry in wanted.entries(after):
            page.append(entry)
            if len(page) > limit:
                break
        next_cursor = None
        if len(page) > limit:
            page = page[:limit]
            next_cursor = encode_cursor((page[-1]["seq"],))
        return Response(
            [_entry(entry) for entry in page],
            headers=next_page_headers("/api/audit", {**wanted.params, "limit": limit}, next_cursor),
        )

    @get(
        "/verify",
        operation_id="verifyAuditTrail",
        summary="Check the whole chain: names the first entry that was removed or changed",
        responses=error_responses(401, 403),
    )
    async def check(self) -> ChainCheck:
        return await verify(blocks())

    @get(
        "/download.ndjson",
        operation_id="downloadAuditTrailNdjson",
        summary="The filtered audit trail as NDJSON, every entry",
        media_type=NDJSON_MEDIA_TYPE,
        responses=error_responses(401, 403),
    )
    async def download_ndjson(self, wanted: NamedDependency[EntryFilter]) -> Stream:
        return _download(wanted, as_csv=False)

    @get(
        "/download.csv",
        operation_id="downloadAuditTrailCsv",
        summary="The filtered audit trail as CSV, every entry",
        media_type="text/csv",
        responses=error_responses(401, 403),
    )
    async def download_csv(self, wanted: NamedDependency[EntryFilter]) -> Stream:
        return _download(wanted, as_csv=True)


def _download(wanted: EntryFilter, as_csv: bool) -> Stream:
    """Every wanted entry, in order, streamed."""

    async def lines() -> AsyncIterator[bytes]:
        if as_csv:
            yield _csv_line(list(COLUMNS))
        async for document in wanted.entries():
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
        collection = client[settings.db_name][AuditBlock.Settings.name]

        result = await verify(collection.find({}).sort("_id", 1))
    finally:
        await client.close()
    if result.ok:
        noun = "entry" if result.entries == 1 else "entries"
        print(f"audit trail intact: {result.entries} {noun}")
        return 0
    print(f"audit trail broken at entry {result.first_broken_seq}: {result.reason}")
    return 1


if __name__ == "__main__":
    if sys.argv[1:] != ["verify"]:
        sys.exit("usage: python -m services.admin.research.audit verify")
    sys.exit(asyncio.run(_verify_command()))
