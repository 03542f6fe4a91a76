"""The export formats: CSV (spreadsheet-safe), JSON, NDJSON and Parquet, each written
from a stream of rows as it arrives, so memory stays flat whatever the export's size.
"""

from __future__ import annotations

import asyncio
import csv
import importlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from services.common.research import codebook
from services.common.research.columns import RecordKind
from services.gateway.proxy.upstream import RECORDS_PER_PAGE

KINDS = ("sentiments", "gps", "vlogs")
# The columns of each kind's export, in order, as the codebook defines them.
COLUMNS = {name: codebook.KINDS[name].columns() for name in KINDS}
ZIP_COLUMNS = {name: codebook.KINDS[name].columns(within="zip") for name in KINDS}
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


async def as_parquet(
    kind: RecordKind,
    columns: list[str],
    rows: AsyncIterator[dict[str, Any]],
    provenance: dict[str, Any],
) -> AsyncIterator[bytes]:
    """services.gateway.exports.parquet's, imported on a process's first Parquet export: with
    Arrow it adds 40 MiB to a gateway process, most of which never make one. Imported
    in a worker thread: the 65-95 ms it takes would hold up every other request."""
    parquet = await asyncio.to_thread(importlib.import_module, "services.gateway.exports.parquet")
    async for piece in parquet.as_parquet(kind, columns, rows, provenance):
        yield piece


def spreadsheet_safe(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(columns: list[str], records: list[dict[str, Any]], *, header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(columns)
    for record in records:
        writer.writerow(
            ["" if record.get(c) is None else spreadsheet_safe(record[c]) for c in columns]
        )
    return buffer.getvalue().encode()


async def _peeked(
    records: AsyncIterator[dict[str, Any]],
) -> tuple[list[dict[str, Any]], AsyncIterator[dict[str, Any]]]:
    """The first record (or none) and the rest. Formats read it before their first
    byte, so an unreachable service is an error response, not a broken download."""
    iterator = aiter(records)
    try:
        return [await anext(iterator)], iterator
    except StopAsyncIteration:
        return [], iterator


async def as_csv(
    columns: list[str], records: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[bytes]:
    """UTF-8 with a byte-order mark (so Excel reads it as UTF-8), RFC 4180 quoting."""
    batch, rest = await _peeked(records)
    yield b"\xef\xbb\xbf" + csv_rows(columns, [], header=True)
    async for record in rest:
        batch.append(record)
        if len(batch) >= RECORDS_PER_PAGE:
            yield csv_rows(columns, batch, header=False)
            batch = []
    if batch:
        yield csv_rows(columns, batch, header=False)


async def as_ndjson(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for record in records:
        yield json.dumps(record, ensure_ascii=False).encode() + b"\n"


async def as_json_array(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    head, rest = await _peeked(records)
    yield b"[" + b"".join(json.dumps(r, ensure_ascii=False).encode() for r in head)
    async for record in rest:
        yield b"," + json.dumps(record, ensure_ascii=False).encode()
    yield b"]"


# Litestar adds `; charset=utf-8` to a text type.
MEDIA_TYPES = {
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}
EXPORTABLE = (*KINDS, "daily")
