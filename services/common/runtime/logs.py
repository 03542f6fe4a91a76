"""JSON-lines logging to stdout and to a rotating file per service.

Every line carries the request id of the request it belongs to; credentials,
tokens and keys are redacted from the finished line, whatever field holds them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler, WatchedFileHandler
from pathlib import Path
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5
REDACTED = "[REDACTED]"

# Shapes of secrets wherever they appear in a line: auth headers, and key/value
# pairs whose key names a secret (api_key, password, token, secret, ...).
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)([\"']?[a-z_]*(?:api_key|apikey|password|passwd|pwd|token|secret|_sk|_ak)[\"']?"
        r"\s*[:=]\s*[\"']?)([^\"'\s,&}]+)"
    ),
    re.compile(r"(mongodb(?:\+srv)?://[^:/@\s]+:)([^@\s]+)(@)"),
)


# Every secret shape above contains one of these words: a line without any (most
# lines, such as every access line) skips the patterns, which cost more than
# the rest of its logging together. Looked for as substrings of the lowered line:
# a case-insensitive regex of the same words took 18 µs per access line, this 2 µs.
_TELLTALES = ("bearer", "basic", "key", "pass", "pwd", "token", "secret", "_sk", "_ak", "mongodb")


class Redactor:
    """Removes secret values from text: the configured ones and anything secret-shaped."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        lowered = text.lower()
        if not any(word in lowered for word in _TELLTALES):
            return text
        text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        return _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)


# LogRecord's own attributes; anything else on a record came as `extra=` and is kept.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactingJsonFormatter(logging.Formatter):
    """One JSON object per line: level, logger, message, the record's extra fields,
    time, service, request id (and worker); secrets redacted from the finished line.

    A line is made once per record however many handlers write it (stdout and the
    file), and encoded by msgspec: the access line of every request is on the
    hot path of every service."""

    def __init__(self, service: str, redactor: Redactor) -> None:
        super().__init__()
        self._service = service
        self._redactor = redactor
        self._worker = os.environ.get("EMOGO_WORKER")
        self._replica = os.environ.get("EMOGO_REPLICA")
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        made: str | None = record.__dict__.get("_emogo_line")
        if made is not None:
            return made
        entry: dict[str, object] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        entry["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        entry["service"] = self._service
        entry["request_id"] = request_id_var.get()
        if self._replica:
            entry["replica"] = self._replica
        if self._worker:
            entry["worker"] = self._worker
        line = self._redactor(self._encoder.encode(entry).decode())
        record.__dict__["_emogo_line"] = line
        return line


class SeldomCheckedRotatingFileHandler(RotatingFileHandler):
    """Rotates by size, looking at the size every few lines rather than at each (a
    seek per line showed in profiles); the file may pass its limit by those lines."""

    CHECK_EVERY = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._since_check = 0

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        self._since_check += 1
        if self._since_check < self.CHECK_EVERY:
            return False
        self._since_check = 0
        return bool(super().shouldRollover(record))


_HANDLER_MARK = "_emogo_handler"


def configure_logging(
    service: str,
    log_dir: Path,
    level: str,
    secrets: Iterable[str] = (),
    console_level: str | None = None,
) -> Path:
    """Send every logger's records to `<log_dir>/<service>.log` as JSON lines, and those
    at `console_level` (default `level`) or above to stdout too."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_file(log_dir, service)
    formatter = RedactingJsonFormatter(service, Redactor(secrets))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    stream = logging.StreamHandler(sys.stdout)
    stream.setLevel(console_level or level)
    # Several workers (and replicas on one log volume, EMOGO_REPLICA) of a service
    # share its file: the first worker of the first replica rotates it, the others
    # reopen it when it has been rotated under them (services.common.runtime.workers).
    file_handler: logging.Handler
    first = (
        os.environ.get("EMOGO_WORKER", "1") == "1" and os.environ.get("EMOGO_REPLICA", "1") == "1"
    )
    if first:
        file_handler = SeldomCheckedRotatingFileHandler(
            path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    else:
        file_handler = WatchedFileHandler(path, encoding="utf-8")
    for handler in (stream, file_handler):
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    # The lines never show a record's process, thread or calling line, so they are not
    # looked up for each record (the logging HOWTO's "Optimization" table): a system
    # call and a walk up the stack per access line.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    logging._srcfile = None
    # Per-request client logs would repeat our access line and may carry query strings.
    for noisy in ("httpx", "httpcore", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def new_request_id(incoming: str | None) -> str:
    """Keep a caller's well-formed id so one request can be followed across services."""
    if incoming and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return os.urandom(16).hex()  # a uuid4's randomness, without building the UUID


access_logger = logging.getLogger("emogo.access")
CLIENT_CLOSED_REQUEST = 499


class RequestContextMiddleware:
    """Gives each HTTP request an id (taken from `X-Request-ID` or made), returns it
    in the response, binds it to every log line, and writes one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = new_request_id(incoming)
        method, path = scope["method"], scope["path"]  # before a mount rewrites the path
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            status = status or 500
            raise
        finally:
            # No answer and no error: the client went away first (nginx's 499).
            status = status or CLIENT_CLOSED_REQUEST
            client = scope.get("client")
            access_logger.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
            request_id_var.reset(token)


TAIL_BLOCK_BYTES = 64 * 1024


def log_file(log_dir: Path, service: str) -> Path:
    """Where `configure_logging` writes a service's log."""
    return log_dir / f"{service}.log"


def tail(path: Path, count: int) -> list[str]:
    """The last `count` complete lines of a file, read backwards in blocks from its
    end, so a log of any size costs only what the lines themselves take. A line another
    process is still writing (a reader may see part of it) is not one of them."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        position = handle.tell()
        pieces: list[bytes] = []
        newlines = 0
        while position > 0 and newlines <= count:
            step = min(TAIL_BLOCK_BYTES, position)
            position -= step
            handle.seek(position)
            block = handle.read(step)
            pieces.append(block)
            newlines += block.count(b"\n")
    text = b"".join(reversed(pieces))
    lines = text[: text.rfind(b"\n") + 1].splitlines()
    return [line.decode("utf-8", "replace") for line in lines[-count:]] if count else []
