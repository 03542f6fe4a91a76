"""The gateway's reads from the services, on behalf of one request: JSON answers,
streamed bodies, and every record of a kind, sent with the caller's own credential,
so the services decide what the caller may see (the gateway has no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
from multidict import CIMultiDictProxy
from yarl import URL

from services.common.research.studies import StudyZones, row_study
from services.common.web.errors import AppError, BadGateway, ServiceUnavailable
from services.gateway.proxy.balancing import Replicas

# Vlogs asked for per request while every record is read.
RECORDS_PER_PAGE = 1000


# How long a client is told to wait before asking again when a service is down.
RETRY_SECONDS = 5


class ServiceDown(ServiceUnavailable):
    """A service did not answer (or answered 5xx): a 503 with Retry-After wherever it
    is not caught; the export page shows a banner for its part instead."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(
            f"The {service} service is not answering",
            extra={"service": service},
            headers={"Retry-After": str(RETRY_SECONDS)},
        )
        self.service = service
        self.reason = reason


class UpstreamRefused(AppError):
    """A service answered 4xx (bad filter, no access): passed on as it is."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        detail = body.get("detail") if isinstance(body, dict) else None
        error = detail.get("error") if isinstance(detail, dict) else None
        super().__init__(error or f"HTTP Error {status}")
        self.status_code = status
        self.body = body


@dataclass
class Answer:
    """A service's whole answer to a GET."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass
class ServiceApi:
    """Calls to the services on behalf of one request, with its credential."""

    session: aiohttp.ClientSession
    upstreams: dict[str, Replicas]
    authorization: str | None
    request_id: str | None = None
    # The zone of studies without one (EMOGO_DISPLAY_TIMEZONE): records' local dates.
    fallback_zone: str = "UTC"
    # Whether the credential is a viewer's, whom studies' protections apply to.
    viewer: bool = False
    headers: dict[str, str] = field(init=False)
    _studies: list[dict[str, Any]] | None = field(init=False, default=None)
    _zones: StudyZones | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.headers = {}
        if self.authorization:
            self.headers["Authorization"] = self.authorization
        if self.request_id:
            self.headers["X-Request-ID"] = self.request_id

    async def _send(
        self, service: str, path: str, params: dict[str, Any] | None
    ) -> aiohttp.ClientResponse:
        """A GET to the service, tried on its next replica when it may be retried."""
        query = urlencode(_clean(params))
        target = f"{path}?{query}" if query else path

        async def attempt(base: str) -> aiohttp.ClientResponse:
            url = URL(base + target, encoded=True)
            return await self.session.get(url, headers=self.headers, allow_redirects=False)

        try:
            return await self.upstreams[service].send("GET", attempt)
        except (aiohttp.ClientError, TimeoutError) as problem:
            raise ServiceDown(service, type(problem).__name__) from None

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Answer:
        response = await self._send(service, path, params)
        try:
            answer = Answer(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as problem:
            raise ServiceDown(service, type(problem).__name__) from None
        finally:
            response.release()
        if answer.status_code >= 500:
            raise ServiceDown(service, f"answered {answer.status_code}")
        if answer.status_code >= 400:
            raise UpstreamRefused(answer.status_code, _body(answer))
        return answer

    async def json(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self.get(service, path, params)).json()

    async def stream(
        self, service: str, path: str, params: dict[str, Any] | None = None
    ) -> AsyncIterator[bytes]:
        """The raw body of a GET, piece by piece; refusals raise before the first piece."""
        response = await self._send(service, path, params)
        try:
            if response.status >= 400:
                answer = Answer(response.status, response.headers, await response.read())
                if answer.status_code >= 500:
                    raise ServiceDown(service, f"answered {answer.status_code}")
                raise UpstreamRefused(answer.status_code, _body(answer))
            async for piece in response.content.iter_any():
                yield piece
        except (aiohttp.ClientError, TimeoutError) as problem:
            raise BadGateway(
                f"{service} broke off the transfer: {type(problem).__name__}"
            ) from None
        finally:
            # Whole bodies give their connection back; one left part-read closes it.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def check_covered(self, filters: dict[str, Any]) -> None:
        """Raises the services' refusal (403) when the credential does not cover the
        study or participant the filters name: asked before a download's first byte,
        whose status can no longer change once it is sent."""
        if filters.get("study_id") is not None or filters.get("user_id") is not None:
            await self.get("ingest", "/api/sentiments", {**filters, "limit": 1})

    async def studies(self) -> list[dict[str, Any]]:
        """The studies the credential may see, as the admin API lists them (read once)."""
        if self._studies is None:
            self._studies = await self.json("admin", "/api/studies")
        return self._studies

    async def zones(self) -> StudyZones:
        """Each study's time zone."""
        if self._zones is None:
            names = {row_study(s["study_id"]): s["days_time_zone"] for s in await self.studies()}
            self._zones = StudyZones(names, self.fallback_zone)
        return self._zones

    async def records(self, kind: str, filters: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every record of `kind` matching `filters`, oldest first, each with its
        `local_date`: the day it was recorded on in its study's time zone."""
        zones = await self.zones()
        async for record in self.plain_records(kind, filters):
            zone = zones.zone(record.get("study_id"))
            instant = datetime.fromisoformat(record["timestamp"])
            record["local_date"] = instant.astimezone(zone).date().isoformat()
            yield record

    async def plain_records(
        self, kind: str, filters: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of `kind` matching `filters`, oldest first, as the service gives it."""
        if kind == "vlogs":
            cursor: str | None = None
            while True:
                params = {**filters, "order": "asc", "limit": RECORDS_PER_PAGE, "cursor": cursor}
                response = await self.get("media", "/api/vlogs", params)
                for vlog in response.json():
                    yield vlog
                cursor = response.headers.get("x-next-cursor")
                if cursor is None:
                    return
        async for record in self.ndjson("ingest", f"/api/{kind}/stream", filters):
            yield record

    async def ndjson(
        self, service: str, path: str, params: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The objects of an NDJSON answer, one by one as its pieces arrive."""
        pending = b""
        async for piece in self.stream(service, path, params):
            pending += piece
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line:
                    yield msgspec.json.decode(line)
        if pending.strip():
            yield msgspec.json.decode(pending)


def _clean(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None and v != ""}


def _body(response: Answer) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"message": f"HTTP Error {response.status_code}", "code": response.status_code,
            "detail": {"error": response.text[:200]}}  # fmt: skip
