"""Parquet exports: the codebook's columns with their types (UTC timestamps, dates,
floats, integers, categories dictionary-encoded), written a row group at a time, so a
large export holds one group in memory, never the whole table. Each file says in its
metadata which schema version it follows and how it was made (provenance)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from services.common.research.columns import RecordKind, Variable
from services.common.research.studies import DEFAULT_STUDY
from services.gateway.exports.codebook_documents import base_type

# Rows per row group: readers skip whole groups by their statistics; the writer holds
# one group (its first costs ~70 MiB of library code and pools once per process, each
# group ~20 MiB more: bench/export.py --parquet).
ROWS_PER_GROUP = 25_000
CHUNK_ROWS = 5_000
TIMESTAMP = pa.timestamp("us", tz="UTC")


def arrow_type(variable: Variable) -> pa.DataType:
    base = base_type(variable)
    if base is datetime:
        return TIMESTAMP
    if base is date:
        return pa.date32()
    if base is float:
        return pa.float64()
    if base is bool:
        return pa.bool_()
    if base is int:
        return pa.int64()
    return pa.dictionary(pa.int32(), pa.string()) if variable.category else pa.string()


def arrow_schema(kind: RecordKind, columns: list[str]) -> pa.Schema:
    fields = []
    for column in columns:
        variable = kind.variable(column)
        if variable is None:  # every export column is in the codebook (tests/gateway)
            raise LookupError(f"{kind.name}.{column} is not in the codebook")
        fields.append(pa.field(column, arrow_type(variable), nullable=True))
    metadata = {"emogo.schema": kind.schema_id, "emogo.schema_version": kind.version}
    return pa.schema(fields, metadata=metadata)


def _column(values: list[Any], target: pa.DataType) -> pa.Array:
    """Python values as an Arrow array of `target`; a category stays text until the
    whole group is in, then is encoded once."""
    if target == TIMESTAMP or target == pa.date32():
        # ISO 8601 text as the services send it, parsed by Arrow (Z and offsets).
        return pa.array(values, pa.string()).cast(target)
    if pa.types.is_dictionary(target):
        return pa.array(values, pa.string())
    return pa.array(values, target)


class _Group:
    """The rows of one row group. Python values cost about ten times their Arrow
    form, so they are turned into Arrow every CHUNK_ROWS rows."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._values: dict[str, list[Any]] = {name: [] for name in schema.names}
        self._chunks: dict[str, list[pa.Array]] = {name: [] for name in schema.names}

    def add(self, row: dict[str, Any]) -> None:
        for name, values in self._values.items():
            values.append(row.get(name))
        self.rows += 1
        if self.rows % CHUNK_ROWS == 0:
            self._convert()

    def _convert(self) -> None:
        for field in self.schema:
            if self._values[field.name]:
                self._chunks[field.name].append(_column(self._values[field.name], field.type))
                self._values[field.name] = []

    def table(self) -> pa.Table:
        self._convert()
        arrays = []
        for field in self.schema:
            whole = pa.concat_arrays(self._chunks[field.name])
            if pa.types.is_dictionary(field.type):
                whole = whole.dictionary_encode()
            arrays.append(whole)
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _write(writer: pq.ParquetWriter, group: _Group) -> None:
    table = group.table()
    writer.write_table(table, row_group_size=table.num_rows)


class _Sink:
    """Where the writer puts its bytes until they are sent."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.pending += data
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data


async def as_parquet(
    kind: RecordKind,
    columns: list[str],
    rows: AsyncIterator[dict[str, Any]],
    provenance: dict[str, Any],
) -> AsyncIterator[bytes]:
    """A Parquet file of `rows`, streamed: each row group is encoded (in a worker
    thread: it is CPU work) and sent before the next is read. The schema's metadata
    names the schema; the file's (`emogo.export`, written last) the provenance, with
    the protections of the studies the file holds."""
    schema = arrow_schema(kind, columns)
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    studies: set[str] = set()
    try:
        group = _Group(schema)
        async for row in rows:
            studies.add(row.get("study_id") or DEFAULT_STUDY)
            group.add(row)
            if group.rows >= ROWS_PER_GROUP:
                full, group = group, _Group(schema)
                await asyncio.to_thread(_write, writer, full)
                del full  # one group held at a time
                yield sink.take()
        if group.rows:
            await asyncio.to_thread(_write, writer, group)
        hidden = provenance.get("protections", {})
        made = {**provenance, "protections": {s: p for s, p in hidden.items() if s in studies}}
        writer.add_key_value_metadata({"emogo.export": json.dumps(made, ensure_ascii=False)})
    finally:
        writer.close()
    yield sink.take()
