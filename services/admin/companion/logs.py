"""The JSON-lines logs every service writes, for the admin only: the last lines of one,
or the whole file, with secrets redacted again on the way out."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from litestar import Controller, MediaType, Request, Response, get
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream

from services.admin.access import ADMIN_ONLY
from services.admin.deps import Settings
from services.admin.settings import AdminSettings
from services.common.runtime.logs import Redactor, log_file, tail
from services.common.runtime.settings import SERVICE_NAMES
from services.common.web.errors import ServiceUnavailable
from services.common.web.openapi import ALSO_SERVED_AS, TEXT, error_responses

MAX_TAIL_LINES = 10_000
LOG_LINES = {
    "type": "object",
    "properties": {"service": {"type": "string"}, "lines": {"type": "array", "items": TEXT}},
    "required": ["service", "lines"],
}

LOG_SERVICES = (*SERVICE_NAMES, "gateway")


LineCount = Annotated[int, PathParameter(ge=1, le=MAX_TAIL_LINES)]
ServiceChoice = Annotated[
    Literal[LOG_SERVICES],  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    QueryParameter(description="Whose log: admin (default), ingest, media or gateway."),
]
FormatChoice = Annotated[
    Literal["html", "json"] | None,
    QueryParameter(description="html (for browsers) or json; else decided by Accept."),
]


class LogController(Controller):
    """The JSON-lines logs every service writes, for the admin only."""

    path = "/"
    tags = ["logs"]
    guards = ADMIN_ONLY

    @staticmethod
    def _path(settings: AdminSettings, service: str) -> Any:
        path = log_file(settings.log_dir, service)
        if not path.is_file():
            raise ServiceUnavailable(f"No log file for {service} at {path}")
        return path

    @staticmethod
    def _redactor(settings: AdminSettings) -> Redactor:
        return Redactor([*settings.credentials.by_role().values(), *settings.secret_keys])

    @get(
        "/tail_log/{n_lines:int}",
        operation_id="tailLog",
        summary=f"The last lines (1 to {MAX_TAIL_LINES}) of a service's log",
        responses=error_responses(401, 403, 503),
        media_type=MediaType.HTML,
        opt={ALSO_SERVED_AS: {"text/html": TEXT, "application/json": LOG_LINES}},
    )
    async def tail_log(
        self,
        settings: Settings,
        request: Request,
        n_lines: LineCount,
        service: ServiceChoice = "admin",
        format: FormatChoice = None,
    ) -> Response[Any]:
        path = self._path(settings, service)
        redact = self._redactor(settings)
        lines = [redact(line) for line in await anyio.to_thread.run_sync(tail, path, n_lines)]
        accept = request.headers.get("accept", "")
        wants_json = format == "json" or (
            format is None and "application/json" in accept and "text/html" not in accept
        )
        if wants_json:
            return Response({"service": service, "lines": lines}, media_type=MediaType.JSON)
        rows = "\n".join(html.escape(line) for line in lines)
        page = (
            f"<!doctype html><html lang=en><meta charset=utf-8>"
            f"<title>{service} log: last {n_lines} lines</title>"
            f"<h1>{service} log: last {len(lines)} lines</h1><pre>{rows}</pre></html>"
        )
        return Response(page, media_type=MediaType.HTML)

    async def _download(self, settings: AdminSettings, service: str) -> Stream:
        path = self._path(settings, service)
        redact = self._redactor(settings)

        async def lines() -> AsyncIterator[bytes]:
            async with await anyio.open_file(path, "rb") as handle:
                async for line in handle:
                    yield redact(line.decode("utf-8", "replace")).encode()

        return Stream(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{service}.log"'},
        )

    @get(
        "/dowload_log_file",
        operation_id="downloadLogFileSeedSpelling",
        summary="A service's whole log as a file (the seed's spelling of the path)",
        responses=error_responses(401, 403, 503),
        opt={ALSO_SERVED_AS: {"application/x-ndjson": TEXT}},
    )
    async def download_seed_spelling(
        self, settings: Settings, service: ServiceChoice = "admin"
    ) -> Stream:
        return await self._download(settings, service)

    @get(
        "/download_log_file",
        operation_id="downloadLogFile",
        summary="A service's whole log as a file",
        responses=error_responses(401, 403, 503),
        opt={ALSO_SERVED_AS: {"application/x-ndjson": TEXT}},
    )
    async def download(self, settings: Settings, service: ServiceChoice = "admin") -> Stream:
        return await self._download(settings, service)
