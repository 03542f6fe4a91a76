"""One kind of record (or the participant-day table) as one file, the seed's export of
everything, and how an export was made (its provenance and what it hides), read from
the services' APIs only (services.gateway.proxy.upstream).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from services.common.research import codebook
from services.common.research.protections import described
from services.common.research.studies import DEFAULT_STUDY
from services.common.web.api_docs import API_VERSION
from services.gateway.exports.daily import daily_table
from services.gateway.exports.formats import (
    COLUMNS,
    ZIP_COLUMNS,
    as_csv,
    as_json_array,
    as_ndjson,
    as_parquet,
)
from services.gateway.proxy.upstream import ServiceApi


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
