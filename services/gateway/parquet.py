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

from services.common.codebook import RecordKind, Variable, base_type
from services.common.studies import DEFAULT_STUDY

# Rows per row group: a few MiB of columns; readers skip whole groups by their statistics.
ROWS_PER_GROUP = 50_000
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
    if target == TIMESTAMP or target == pa.date32():
        # ISO 8601 text as the services send it, parsed by Arrow (Z and offsets).
        return pa.array(values, pa.string()).cast(target)
    if pa.types.is_dictionary(target):
        return pa.array(values, pa.string()).dictionary_encode()
    return pa.array(values, target)


def _write(writer: pq.ParquetWriter, columns: dict[str, list[Any]], schema: pa.Schema) -> None:
    arrays = [_column(columns[f.name], f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
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
        # A group is kept as columns, not rows: a value each, no dict per row.
        group: dict[str, list[Any]] = {name: [] for name in schema.names}
        held = 0
        async for row in rows:
            studies.add(row.get("study_id") or DEFAULT_STUDY)
            for name, values in group.items():
                values.append(row.get(name))
            held += 1
            if held >= ROWS_PER_GROUP:
                full, group, held = group, {name: [] for name in schema.names}, 0
                await asyncio.to_thread(_write, writer, full, schema)
                yield sink.take()
        if held:
            await asyncio.to_thread(_write, writer, group, schema)
        hidden = provenance.get("protections", {})
        made = {**provenance, "protections": {s: p for s, p in hidden.items() if s in studies}}
        writer.add_key_value_metadata({"emogo.export": json.dumps(made, ensure_ascii=False)})
    finally:
        writer.close()
    yield sink.take()
