"""The ZIP of everything: each kind's CSV, NDJSON and Parquet from one read, every video
chunk by chunk, the codebook, a README and a manifest with each file's sha256; streamed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from stream_zip import NO_COMPRESSION_64, ZIP_64, ZIP_AUTO, async_stream_zip

from services.common.research import codebook
from services.gateway.exports import codebook_documents
from services.gateway.exports.daily import daily_table
from services.gateway.exports.fanout import Format, one_read
from services.gateway.exports.files import StudiesSeen, provenance
from services.gateway.exports.formats import (
    COLUMNS,
    ZIP_COLUMNS,
    as_csv,
    as_ndjson,
    as_parquet,
)
from services.gateway.proxy.upstream import ServiceApi

# Pieces of the ZIP handed over at once: fewer, larger hand-overs from its worker thread.
ZIP_CHUNK_BYTES = 1024 * 1024


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

        # Each kind is read once for its three files (services.gateway.exports.fanout).
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
