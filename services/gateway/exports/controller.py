"""The downloads the export page links to, and the compliance report: every one read
from the services with the caller's own credential (services.gateway.deps)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Response, get
from litestar.di import Provide
from litestar.params import FromPath
from litestar.response import Stream

from services.common.research import codebook
from services.common.research.auth import READERS, requires
from services.common.web.errors import NotFound
from services.common.web.openapi import ALSO_SERVED_AS, BINARY, TEXT
from services.common.web.schemas import utc_now
from services.gateway.deps import (
    Api,
    Filters,
    Settings,
    Turns,
    provide_compliance_filters,
    provide_export_filters,
)
from services.gateway.exports import codebook_documents
from services.gateway.exports.archive import export_zip
from services.gateway.exports.compliance import as_csv, read_report
from services.gateway.exports.files import export_all, export_file
from services.gateway.exports.formats import MEDIA_TYPES
from services.gateway.exports.responses import attachment, in_turn, named, stamp, started
from services.gateway.schemas import ComplianceReport

EXPORT_NAME = re.compile(r"^(sentiments|gps|vlogs|daily)\.(csv|ndjson|json|parquet)$")


class ExportController(Controller):
    """Every file of an export, one kind at a time or all at once."""

    path = "/api/export"
    tags = ["export"]
    guards = [requires(*READERS)]
    dependencies = {"filters": Provide(provide_export_filters)}

    @get(
        "/all",
        operation_id="exportAll",
        summary="The seed's export of everything",
        opt={ALSO_SERVED_AS: {"application/json": {"type": "object"}}},
    )
    async def export_all(self, api: Api, filters: Filters) -> Stream:
        pieces = await started(export_all(api, filters))
        return attachment(f"emogo-all-{stamp()}.json", "application/json", pieces)

    @get(
        "/everything.zip",
        operation_id="exportZip",
        summary="Every file and video",
        opt={ALSO_SERVED_AS: {"application/zip": BINARY}},
    )
    async def export_zip(
        self, api: Api, settings: Settings, turns: Turns, filters: Filters
    ) -> Stream:
        pieces = await in_turn(turns, export_zip(api, filters, settings.temp_dir))
        return attachment(f"emogo-export-{stamp()}.zip", "application/zip", pieces)

    @get(
        "/codebook.json",
        operation_id="exportCodebook",
        summary="What every column of every export means: a JSON Schema per kind",
    )
    async def codebook_json(self) -> Response[dict[str, Any]]:
        return Response(codebook_documents.codebook(), headers=named("emogo-codebook.json"))

    @get(
        "/codebook.csv",
        operation_id="exportCodebookCsv",
        summary="The codebook as a table: variable, kind, type, unit, description, ...",
        opt={ALSO_SERVED_AS: {"text/csv": TEXT}},
    )
    async def codebook_csv(self) -> Response[bytes]:
        return Response(
            codebook_documents.codebook_csv(),
            media_type=MEDIA_TYPES["csv"],
            headers=named("emogo-codebook.csv"),
        )

    @get(
        "/{name:str}",
        operation_id="exportRecords",
        summary="One kind of record, or the participant-day table, as csv, json, ndjson or "
        "parquet: sentiments.csv, gps.parquet, daily.csv, ...",
        opt={
            ALSO_SERVED_AS: {
                "text/csv": TEXT,
                "application/json": {"type": "array", "items": {"type": "object"}},
                "application/x-ndjson": TEXT,
                "application/vnd.apache.parquet": BINARY,
            }
        },
    )
    async def export_records(
        self, api: Api, turns: Turns, name: FromPath[str], filters: Filters
    ) -> Stream:
        match = EXPORT_NAME.match(name)
        if match is None:
            raise NotFound(
                f"No export {name!r}: ask for sentiments, gps, vlogs or daily as .csv, .json, "
                ".ndjson or .parquet (or codebook.json, codebook.csv)"
            )
        kind_name, format_name = match.groups()
        kind = codebook.KINDS[kind_name]
        made = await export_file(api, kind_name, format_name, filters)
        pieces = await (in_turn(turns, made) if format_name == "parquet" else started(made))
        # The schema version is in the file's name, so it stays with the file.
        name = f"emogo-{kind_name}-v{kind.version}-{stamp()}.{format_name}"
        return attachment(
            name, MEDIA_TYPES[format_name], pieces, **{"X-EmoGo-Schema": kind.schema_id}
        )


class ComplianceController(Controller):
    """Who is reporting, against what each study expects (services.gateway.exports.compliance)."""

    path = "/api/telemetry"
    tags = ["compliance"]
    guards = [requires(*READERS)]
    dependencies = {"filters": Provide(provide_compliance_filters)}

    @get(
        "/compliance",
        operation_id="compliance",
        summary="Per participant: what arrived per local day, rates against the study's "
        "expectations, and who stopped reporting (first)",
    )
    async def compliance(self, api: Api, settings: Settings, filters: Filters) -> ComplianceReport:
        return await read_report(api, filters, utc_now(), settings.display_timezone)

    @get(
        "/compliance.csv",
        operation_id="complianceCsv",
        summary="The compliance report, one row per participant",
        media_type="text/csv",
        opt={ALSO_SERVED_AS: {"text/csv": TEXT}},
    )
    async def compliance_csv(
        self, api: Api, settings: Settings, filters: Filters
    ) -> Response[bytes]:
        report = await read_report(api, filters, utc_now(), settings.display_timezone)
        return Response(
            as_csv(report),
            media_type=MEDIA_TYPES["csv"],
            headers=named(f"emogo-compliance-{stamp()}.csv"),
        )
