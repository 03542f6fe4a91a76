"""The bulk exports (CSV, JSON, NDJSON, the seed's JSON and the ZIP) and what the
export page shows, from the services' APIs only (services.gateway.upstream).
Everything large is streamed: records as they arrive, videos chunk by chunk, so
memory stays flat whatever the export's size.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import importlib
import io
import json
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from stream_zip import NO_COMPRESSION_64, ZIP_64, ZIP_AUTO, async_stream_zip

from services.common.research import codebook
from services.common.research.protections import described
from services.common.research.studies import DEFAULT_STUDY
from services.common.web.app import API_VERSION
from services.gateway import codebook_documents
from services.gateway.daily import daily_table
from services.gateway.fanout import Format, one_read
from services.gateway.upstream import RECORDS_PER_PAGE, ServiceApi, ServiceDown

# Pieces of the ZIP handed over at once: fewer, larger hand-overs from its worker thread.
ZIP_CHUNK_BYTES = 1024 * 1024
KINDS = ("sentiments", "gps", "vlogs")
# The columns of each kind's export, in order, as the codebook defines them.
COLUMNS = {name: codebook.KINDS[name].columns() for name in KINDS}
ZIP_COLUMNS = {name: codebook.KINDS[name].columns(within="zip") for name in KINDS}
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- formats ------------------------------------------------------------------------


async def as_parquet(
    kind: codebook.RecordKind,
    columns: list[str],
    rows: AsyncIterator[dict[str, Any]],
    provenance: dict[str, Any],
) -> AsyncIterator[bytes]:
    """services.gateway.parquet's, imported on a process's first Parquet export: with
    Arrow it adds 40 MiB to a gateway process, most of which never make one. Imported
    in a worker thread: the 65-95 ms it takes would hold up every other request."""
    parquet = await asyncio.to_thread(importlib.import_module, "services.gateway.parquet")
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


async def table(
    api: ServiceApi, kind: str, filters: dict[str, Any], within: str = "file"
) -> tuple[list[str], AsyncIterator[dict[str, Any]]]:
    """An export's columns and rows: a kind of record, or the participant-day table."""
    if kind == "daily":
        return await daily_table(api, filters)
    columns = ZIP_COLUMNS[kind] if within == "zip" else COLUMNS[kind]
    return columns, api.records(kind, filters)


async def export_file(
    api: ServiceApi, kind: str, format_name: str, filters: dict[str, Any]
) -> AsyncIterator[bytes]:
    """One kind (or the daily table) in one format, streamed."""
    columns, rows = await table(api, kind, filters)
    if format_name == "csv":
        return as_csv(columns, rows)
    if format_name == "ndjson":
        return as_ndjson(rows)
    if format_name == "json":
        return as_json_array(rows)
    # Its first piece comes after a row group is read: a service that is down is still
    # an error response, not a broken download.
    return as_parquet(codebook.KINDS[kind], columns, rows, await provenance(api, filters))


async def provenance(api: ServiceApi, filters: dict[str, Any]) -> dict[str, Any]:
    """How an export was made: by which server, when, of what (filters), each study's
    time zone (of `local_date`), the schema of each kind, and what was hidden."""
    zones = await api.zones()
    chosen = filters.get("study_id")
    return {
        "server": "EmoGo",
        "server_version": API_VERSION,
        "export_date": datetime.now(UTC).isoformat(),
        "filters": {k: v for k, v in filters.items() if v is not None},
        "time_zones": {
            study or DEFAULT_STUDY: name
            for study, name in sorted(zones.names.items())
            if chosen in (None, study or DEFAULT_STUDY)
        },
        # The zone of a study that has none of its own (EMOGO_DISPLAY_TIMEZONE).
        "fallback_time_zone": zones.fallback,
        "schemas": {name: kind.schema_id for name, kind in codebook.KINDS.items()},
        "protections": await protections(api, filters),
    }


class StudiesSeen:
    """The studies of the rows that pass through: what an export holds, so that it
    names the protections of those studies only."""

    def __init__(self) -> None:
        self.studies: set[str] = set()

    async def through(self, rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async for row in rows:
            self.studies.add(row.get("study_id") or DEFAULT_STUDY)
            yield row

    def narrowed(self, hidden: dict[str, list[str]]) -> dict[str, list[str]]:
        return {study: phrases for study, phrases in hidden.items() if study in self.studies}


async def protections(api: ServiceApi, filters: dict[str, Any]) -> dict[str, list[str]]:
    """What each study of an export hid from the caller: {study: phrases}, empty for
    the admin (who sees everything) and where no study protects anything."""
    if not api.viewer:
        return {}
    studies = await api.studies()
    return {
        study["study_id"]: phrases
        for study in studies
        if filters.get("study_id") in (None, study["study_id"])
        and (phrases := described(study.get("pseudonyms", False), study.get("gps_grid_m")))
    }


async def export_all(api: ServiceApi, filters: dict[str, Any]) -> AsyncIterator[bytes]:
    """The seed's `GET /api/export/all` body, streamed."""
    await api.check_covered(filters)
    counts = {
        "total_vlogs": (await api.json("media", "/api/vlogs/count", filters))["count"],
        "total_sentiments": (await api.json("ingest", "/api/sentiments/count", filters))["count"],
        "total_gps_coordinates": (await api.json("ingest", "/api/gps/count", filters))["count"],
    }
    hidden = await protections(api, filters)
    seen = StudiesSeen()
    head = {"export_date": datetime.now(UTC).isoformat(), **counts}
    yield json.dumps(head)[:-1].encode() + b', "data": {'
    for position, (name, kind) in enumerate(
        (("vlogs", "vlogs"), ("sentiments", "sentiments"), ("gps_coordinates", "gps"))
    ):
        yield (b", " if position else b"") + f'"{name}": '.encode()
        async for piece in as_json_array(seen.through(api.records(kind, filters))):
            yield piece
    # Only when something in it was hidden: otherwise the body keeps the seed's shape.
    applied = seen.narrowed(hidden)
    yield b"}" + (b', "protections": ' + json.dumps(applied).encode() if applied else b"") + b"}"


# --- the ZIP ------------------------------------------------------------------------


def video_path(vlog: dict[str, Any]) -> str:
    """A readable path inside the ZIP: videos/<participant>/<date>_<title>_<id>.<ext>."""
    title = "".join(c if c.isalnum() or c in "-_ " else "_" for c in vlog.get("title") or "")
    title = "_".join(title.split())[:60] or "vlog"
    day = str(vlog.get("timestamp", ""))[:10]
    extension = {"mov": "mov", "webm": "webm", "mkv": "mkv", "avi": "avi"}.get(
        vlog.get("container") or "", "mp4"
    )
    return f"videos/{vlog['user_id']}/{day}_{title}_{vlog['_id'][-6:]}.{extension}"


ZIP_README = """EmoGo export

codebook.json, codebook.csv: what every column of every file means (type, unit, range,
  time semantics, the method of each daily feature and its citation).
sentiments.*, gps.*, vlogs.*: one row per record; daily.*: one row per participant and
  local day (sentiments per emotion, GPS coverage, distance, radius of gyration,
  places, time at home, vlogs).
  .csv: UTF-8, times in UTC (ISO 8601); cells that would start a spreadsheet formula
        are prefixed with an apostrophe.
  .parquet: typed columns (UTC timestamps, dates, numbers, categories); the schema id
        and this export's provenance are in the file's metadata.
  .ndjson: the same records as JSON, one per line.
  study_id: the study a row belongs to; local_date: the day in that study's time zone.
videos/<participant>/: every stored video, byte for byte as uploaded.
manifest.json: the server and its version, the export time, the filters, each study's
  time zone, each kind's schema id, counts, the sha256 of every file, and per study
  what this export does not show ("protections"): participant ids replaced by the
  study's pseudonyms (anon-...), GPS fixes rounded to a grid.
"""


class Hashing:
    """Passes bytes through, remembering their sha256 and length."""

    def __init__(self, pieces: AsyncIterator[bytes]) -> None:
        self.pieces = pieces
        self.digest = hashlib.sha256()
        self.size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self.pieces:
            self.digest.update(piece)
            self.size += len(piece)
            yield piece


async def export_zip(
    api: ServiceApi, filters: dict[str, Any], spool_dir: Path
) -> AsyncIterator[bytes]:
    """One ZIP: every data file, every stored video, a manifest and a README. Files
    made from the same rows wait in `spool_dir` for their turn."""
    await api.check_covered(filters)
    now = datetime.now(UTC)
    files: dict[str, Hashing] = {}
    videos: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}

    seen = StudiesSeen()

    async def counted(kind: str) -> AsyncIterator[dict[str, Any]]:
        counts[kind] = 0
        async for record in seen.through(api.records(kind, filters)):
            counts[kind] += 1
            yield record

    made = await provenance(api, filters)

    async def entries() -> AsyncIterator[tuple[str, datetime, int, Any, AsyncIterator[bytes]]]:
        def data_file(name: str, pieces: AsyncIterator[bytes]) -> tuple:
            files[name] = Hashing(pieces)
            return name, now, 0o644, ZIP_64, files[name].__aiter__()

        # Each kind is read once for its three files (services.gateway.fanout).
        for kind in ("sentiments", "gps"):
            parquet = partial(as_parquet, codebook.KINDS[kind], COLUMNS[kind], provenance=made)
            formats: list[tuple[str, Format]] = [
                (f"{kind}.csv", partial(as_csv, COLUMNS[kind])),
                (f"{kind}.ndjson", as_ndjson),
                (f"{kind}.parquet", parquet),
            ]
            async for name, pieces in one_read(counted(kind), formats, spool_dir):
                yield data_file(name, pieces)
        vlogs = [vlog async for vlog in seen.through(api.records("vlogs", filters))]
        counts["vlogs"] = len(vlogs)
        for vlog in vlogs:
            vlog["zip_path"] = video_path(vlog) if vlog.get("download_url") else None

        async def vlog_rows() -> AsyncIterator[dict[str, Any]]:
            for vlog in vlogs:
                yield vlog

        yield data_file("vlogs.csv", as_csv(ZIP_COLUMNS["vlogs"], vlog_rows()))
        vlog_table = as_parquet(codebook.VLOGS, ZIP_COLUMNS["vlogs"], vlog_rows(), made)
        yield data_file("vlogs.parquet", vlog_table)
        # Computed once for both files: the table holds a row per participant and day,
        # too many to keep for a large study, and its features take a while.
        columns, rows = await daily_table(api, filters)
        formats = [
            ("daily.csv", partial(as_csv, columns)),
            ("daily.parquet", partial(as_parquet, codebook.DAILY, columns, provenance=made)),
        ]
        async for name, pieces in one_read(rows, formats, spool_dir):
            yield data_file(name, pieces)
        yield data_file("codebook.json", _once(codebook_json()))
        yield data_file("codebook.csv", _once(codebook_documents.codebook_csv()))
        for vlog in vlogs:
            if vlog["zip_path"]:
                download = api.stream("media", f"/api/vlogs/{vlog['_id']}/download")
                # The media service verified the video's sha256 when it was uploaded;
                # hashing a gigabyte again here would halve the export's speed.
                videos[vlog["zip_path"]] = {"sha256": vlog["sha256"], "bytes": vlog["file_size"]}
                # Stored, not deflated: videos are compressed already. With the CRC-32
                # the media service took at upload, the bytes pass through untouched.
                if vlog.get("crc32") is not None:
                    method = NO_COMPRESSION_64(vlog["file_size"], vlog["crc32"])
                else:
                    method = ZIP_AUTO(vlog["file_size"], level=0)
                yield vlog["zip_path"], now, 0o644, method, download
        yield data_file("README.txt", _once(ZIP_README.encode()))
        manifest = {
            **made,
            # Per study of what it holds, what this export does not show.
            "protections": seen.narrowed(made["protections"]),
            "export_date": now.isoformat(),
            "filters": filters,
            "counts": counts,
            "files": {
                **{
                    name: {"sha256": f.digest.hexdigest(), "bytes": f.size}
                    for name, f in files.items()
                },
                **videos,
            },
        }
        yield "manifest.json", now, 0o644, ZIP_64, _once(json.dumps(manifest, indent=2).encode())

    async for piece in async_stream_zip(
        entries(),
        chunk_size=ZIP_CHUNK_BYTES,
        get_compressobj=lambda: zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS),
    ):
        yield piece


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def codebook_json() -> bytes:
    return json.dumps(codebook_documents.codebook(), indent=2, ensure_ascii=False).encode()


# --- the page -----------------------------------------------------------------------

PARTICIPANTS_PER_PAGE = 25
VLOGS_PER_PAGE = 12


def merge_participants(
    telemetry: list[dict[str, Any]],
    vlogs: list[dict[str, Any]],
    after: str | None = None,
    through: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of one page of the participant table, by participant id.

    The page spans the ids after `after` through `through` (the telemetry page's last
    id; None when it is the last page): participants with vlogs but no telemetry in
    that span get a row too."""
    by_user = {row["user_id"]: row for row in vlogs}
    people = {row["user_id"]: row for row in telemetry}
    for user_id in by_user:
        if (after is None or user_id > after) and (through is None or user_id <= through):
            people.setdefault(user_id, {"user_id": user_id, "sentiments": 0, "gps_fixes": 0})
    rows = []
    for user_id in sorted(people):
        row, media = people[user_id], by_user.get(user_id, {})
        times_first = [t for t in (row.get("first_activity"), media.get("first_recorded")) if t]
        times_last = [t for t in (row.get("last_activity"), media.get("last_recorded")) if t]
        rows.append(
            {
                "user_id": user_id,
                "sentiments": row["sentiments"],
                "gps_fixes": row["gps_fixes"],
                "vlogs": media.get("vlogs", 0),
                "first_activity": min(times_first) if times_first else None,
                "last_activity": max(times_last) if times_last else None,
            }
        )
    return rows


def vlog_totals(activity: list[dict[str, Any]]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """From media's activity rows (per participant of each study): the vlogs' count and
    bytes, and per participant id their vlogs, first and last recording."""
    people: dict[str, dict[str, Any]] = {}
    for row in activity:
        person = people.setdefault(
            row["user_id"],
            {
                "user_id": row["user_id"],
                "vlogs": 0,
                "first_recorded": row["first_recorded"],
                "last_recorded": row["last_recorded"],
            },
        )
        person["vlogs"] += row["vlogs"]
        person["first_recorded"] = min(person["first_recorded"], row["first_recorded"])
        person["last_recorded"] = max(person["last_recorded"], row["last_recorded"])
    count = {
        "count": sum(row["vlogs"] for row in activity),
        "total_bytes": sum(row["total_bytes"] for row in activity),
    }
    return count, [people[user_id] for user_id in sorted(people)]


def local_time(value: str | datetime | None, zone: str) -> str:
    """An instant (ISO 8601, or a datetime; naive is UTC) as `YYYY-MM-DD HH:MM` in the
    page's time zone."""
    if not value:
        return ""
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def human_bytes(size: int | None) -> str:
    if not size:
        return "0 B"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


async def section(job: Any) -> tuple[Any, str | None]:
    """A part of the page: its data, or why its service could not give it."""
    try:
        return await job, None
    except ServiceDown as down:
        return (
            None,
            f"The {down.service} service is not answering ({down.reason}); this part is missing.",
        )
