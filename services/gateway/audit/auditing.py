"""Recording who read participant data and who changed what, at the one door every
such request passes: the gateway.

`AuditMiddleware` notes each read of a personal-data route (lists, single records,
counts, streams, summaries, the export page and map, every export and ZIP, video
downloads and plays), each edit or deletion by any credential and each post made with
an admin or viewer credential, once its answer has been sent: the credential (its id
and name, never the secret), the action, study, participants and filters, records and
bytes served, status, request id and client address. Phones' new records are not
recorded one by one.

Each entry is handed to the recorder (services.gateway.audit.recorder), which has it on
disk before the answer's last piece is sent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from services.common.research.audit import AuditEntry
from services.common.research.auth import (
    PRINCIPAL_SCOPE_KEY,
    Role,
    credential_id,
    issued_principal,
    principal_from_header,
)
from services.common.research.tokens import TokenKind, issued_token_in, token_digest
from services.common.web.errors import ServiceUnavailable, error_body
from services.common.web.schemas import Principal
from services.gateway.audit.recorder import AuditRecorder
from services.gateway.proxy.issued import CredentialCheckFailed

logger = logging.getLogger("emogo.audit")

# Routes whose reads are recorded: participant data, and what the admin reads about
# participants and users (deletion receipts, the services' logs).
PERSONAL_DATA = (
    "/api/sentiments",
    "/api/gps",
    "/api/telemetry",
    "/api/vlogs",
    "/api/export",
    "/export",
    "/api/studies",
    "/api/deletion-receipts",
    "/tail_log",
    "/dowload_log_file",
    "/download_log_file",
)
READS = frozenset({"GET", "HEAD"})
NOT_CHANGES = READS | {"OPTIONS"}
CHANGERS = frozenset({Role.ADMIN, Role.VIEWER})
# How an issued token is named when the admin service could not be asked whose it is.
UNRESOLVED_NAME = "an issued token the admin service could not resolve then"
# The issued tokens whose changes are recorded (participants' writes are phones').
CHANGERS_TOKENS = (TokenKind.VIEWER,)
# A JSON answer up to this size is read to count its records.
COUNTED_JSON_BYTES = 2 * 1024 * 1024
MOST_FILTER_CHARS = 500


def is_personal_data(path: str) -> bool:
    return any(
        path == prefix or path.startswith((prefix + "/", prefix + ".")) for prefix in PERSONAL_DATA
    )


def _credential(principal: Principal) -> tuple[str, str]:
    """The credential's id and a person's name for it; the environment's tokens are
    named by their role."""
    named = credential_id(principal)
    if principal.token_id:
        return named, principal.token_name or named
    return named, f"the environment's {principal.role} token"


def _participants(path: str, filters: dict[str, str], principal: Principal) -> list[str]:
    """Whose data a request is about: the `user_id` it names, a participant in its
    path, or a participant credential's own."""
    found = []
    if filters.get("user_id"):
        found.append(filters["user_id"])
    parts = path.strip("/").split("/")
    for index, part in enumerate(parts[:-1]):
        if part == "participants" and parts[index + 1] not in found:
            found.append(parts[index + 1])
    if principal.role == Role.PARTICIPANT and principal.user_id and not found:
        found.append(principal.user_id)
    return found


def _study(path: str, filters: dict[str, str], principal: Principal) -> str | None:
    if filters.get("study_id"):
        return filters["study_id"]
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "studies"] and len(parts) > 2:
        return parts[2]
    if principal.study_ids and len(principal.study_ids) == 1:
        return principal.study_ids[0]
    return None


def _filters(query_string: bytes) -> dict[str, str]:
    filters: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        joined = f"{filters[name]},{value}" if name in filters else value
        filters[name[:100]] = joined[:MOST_FILTER_CHARS]
    return filters


async def _send_error(send: Send, error: ServiceUnavailable) -> None:
    body = msgspec.json.encode(error_body(error.status_code, error.error))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": error.status_code,
        "headers": headers,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ResponseTally:
    """What an answer carried: its status, bytes, and records where they can be
    counted (lines of NDJSON or CSV, items of a JSON list)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.bytes = 0
        self.kind = ""
        self.lines = 0
        self.json: list[bytes] | None = None

    def start(self, message: HTTPResponseStartEvent) -> None:
        self.status = message["status"]
        for name, value in message.get("headers", []):
            if name.lower() == b"content-type":
                self.kind = value.decode("latin-1").split(";")[0].strip().lower()
        if self.kind == "application/json":
            self.json = []

    def body(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self.kind in ("application/x-ndjson", "text/csv"):
            self.lines += chunk.count(b"\n")
        elif self.json is not None:
            if self.bytes > COUNTED_JSON_BYTES:
                self.json = None
            else:
                self.json.append(chunk)

    def records(self) -> int | None:
        if self.status is None or self.status >= 400:
            return None
        if self.kind == "application/x-ndjson":
            return self.lines
        if self.kind == "text/csv":
            return max(self.lines - 1, 0)  # its header line
        if self.json:
            body = b"".join(self.json).lstrip()
            try:
                # Raw items: counted without building them.
                if body.startswith(b"["):
                    return len(msgspec.json.decode(body, type=list[msgspec.Raw]))
                listed = msgspec.json.decode(body, type=_Listed)
            except msgspec.DecodeError:
                return None
            return len(listed.participants) if listed.participants is not None else None
        return None


class _Listed(msgspec.Struct):
    """The list inside an object answer (a participant table); other fields skipped."""

    participants: list[msgspec.Raw] | None = None


class AuditMiddleware:
    """Records each audited request once its answer is sent (see the module)."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recorder: AuditRecorder | None = self.state.get("audit")
        if scope["type"] != ScopeType.HTTP or recorder is None:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        read = method in READS and is_personal_data(path)
        if not read and method in NOT_CHANGES:
            await self.app(scope, receive, send)
            return
        # Every change by any credential is recorded, but a phone's new records (its
        # POSTs, thousands an hour) are not, one by one.
        edit = not read and method != "POST"
        try:
            principal = await self._who(scope, read or edit)
        except CredentialCheckFailed as failed:
            # The services share the database that failed: 503 now, not after another wait.
            await _send_error(send, failed)
            return
        if principal is None or (not read and not edit and principal.role not in CHANGERS):
            await self.app(scope, receive, send)
            return
        tally = ResponseTally()
        # Noted now: a mount rewrites the scope's path on the way in.
        action = f"{method} {path}"
        query_string = scope.get("query_string", b"")
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                recorder.record(self._entry(scope, action, query_string, principal, tally))

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                tally.start(message)
            elif message["type"] == "http.response.body":
                tally.body(message.get("body", b""))
                if not message.get("more_body", False):
                    # On disk before the answer completes: a kill now loses nothing.
                    record()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            record()

    async def _who(self, scope: Scope, read: bool) -> Principal | None:
        """The request's credential, or None (no credential, or not one we issued: the
        route answers 401 and nothing was read). For a new record, only the credentials
        whose writes are recorded: a phone's post costs no token lookup."""
        header = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        if not header:
            return None
        principal = principal_from_header(header, self.state.settings.credentials)
        if principal is not None or not issued_token_in(header, *(() if read else CHANGERS_TOKENS)):
            return principal
        try:
            principal = await issued_principal(header, self.state.issued_tokens)
        except CredentialCheckFailed:
            raise
        except Exception:
            # The admin service cannot say whose it is, but the services may still
            # serve the read (they check tokens in the database): recorded under the
            # token's digest, which names it without revealing it.
            token = issued_token_in(header) or ""
            return Principal(
                role="unresolved",
                token_id=f"sha256:{token_digest(token)[:16]}",
                token_name=UNRESOLVED_NAME,
            )
        if principal is not None:  # the gateway's own guards need not ask again
            scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]  # our own key in Litestar's scope
        return principal

    @staticmethod
    def _entry(
        scope: Scope,
        action: str,
        query_string: bytes,
        principal: Principal,
        tally: ResponseTally,
    ) -> AuditEntry:
        path = action.split(" ", 1)[1]
        filters = _filters(query_string)
        named, credential_name = _credential(principal)
        client = scope.get("client")
        return AuditEntry(
            time=datetime.now(UTC),
            credential_id=named,
            credential_name=credential_name,
            role=str(principal.role),
            action=action,
            # No answer at all: the client went away first (nginx's 499).
            status=tally.status or 499,
            bytes=tally.bytes,
            records=tally.records(),
            request_id=scope.get("state", {}).get("request_id", ""),
            study_id=_study(path, filters, principal),
            participants=_participants(path, filters, principal),
            filters=filters,
            client=client[0] if client else None,
        )
