"""One error hierarchy for every service, mapped to HTTP in one place.

Every error leaves as the admin backend's envelope, which the whole platform uses:
    {"message": "HTTP Error 404", "code": 404, "detail": {"error": "<text>"}}
and validation errors as
    {"message": "Validation Error", "code": 422, "detail": {"errors": [...], "error": "<summary>"}}
No traceback ever reaches a response; unexpected errors are logged with the request id.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.types import ExceptionHandlersMap
from pymongo.errors import ConnectionFailure, PyMongoError

from services.common.web.schemas import PATTERN_RULES

logger = logging.getLogger("emogo.errors")
DATABASE_RETRY_AFTER_SECONDS = 5
# What Litestar's request stream raises (as a 500) when the client hangs up mid-body.
CLIENT_DISCONNECTED = "client disconnected prematurely"


class AppError(Exception):
    """Base of every error a service raises on purpose."""

    status_code = 500

    def __init__(
        self,
        error: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra or {}
        self.headers = headers or {}


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Gone(AppError):
    status_code = 410


class PreconditionFailed(AppError):
    status_code = 412


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMediaType(AppError):
    status_code = 415


class RangeNotSatisfiable(AppError):
    status_code = 416


class ChecksumMismatch(AppError):
    """tus's own status: the bytes sent do not have the checksum sent with them."""

    status_code = 460


class RequestTimeout(AppError):
    status_code = 408


class TooManyRequests(AppError):
    status_code = 429


class BadGateway(AppError):
    status_code = 502


class ServiceUnavailable(AppError):
    status_code = 503


class GatewayTimeout(AppError):
    status_code = 504


class FieldError(AppError):
    """Input that fails validation: each entry names the field and the reason."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(summarize(errors))


def field_error(field: str, reason: str) -> FieldError:
    return FieldError([{"field": field, "reason": reason}])


def summarize(errors: list[dict[str, Any]]) -> str:
    parts = [f"{e['field']}: {e['reason']}" if e.get("field") else str(e["reason"]) for e in errors]
    return "; ".join(parts) or "Invalid input"


_REGEX_REASON = re.compile(r"^Expected `str` matching regex '(?P<pattern>.*)'$")


_LENGTH_REASON = re.compile(r"^Expected `str` of length (?P<bound>[<>])= (?P<count>\d+)$")
_TYPE_REASON = re.compile(r"^Expected `(?P<wanted>[a-z |]+)`, got `(?P<got>[a-z]+)`$")
_BOUND_REASON = re.compile(r"^Expected `(?:int|float)` (?P<op>[<>]=?) (?P<bound>\S+)$")
# msgspec's names of JSON types, in words.
_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}
_BOUND_WORDS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}


def explain(reason: str) -> str:
    """msgspec names a failed pattern by its regex, and a wrong type or a number out of
    bounds in its own notation (Expected `float` <= 1.0); say the rule in words
    instead (a person reads these: the front end shows them)."""
    if match := _REGEX_REASON.match(reason):
        # msgspec quotes the pattern with its backslashes doubled.
        pattern = match["pattern"].replace("\\\\", "\\")
        if pattern in PATTERN_RULES:
            return f"must be {PATTERN_RULES[pattern]}"
    if match := _LENGTH_REASON.match(reason):
        least = "at least" if match["bound"] == ">" else "at most"
        return f"must be {least} {match['count']} characters"
    if match := _BOUND_REASON.match(reason):
        return f"must be {_BOUND_WORDS[match['op']]} {match['bound']}"
    if match := _TYPE_REASON.match(reason):
        names = [name.strip() for name in match["wanted"].split("|")]
        got = "a decimal number" if match["got"] == "float" else _TYPE_WORDS.get(match["got"])
        if got and all(name in _TYPE_WORDS for name in names):
            wanted = " or ".join(_TYPE_WORDS[name] for name in names)
            return f"must be {wanted}, not {got}"
    return reason


def error_body(status_code: int, error: str, **extra: Any) -> dict[str, Any]:
    return {
        "message": f"HTTP Error {status_code}",
        "code": status_code,
        "detail": {"error": error, **extra},
    }


def validation_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "message": "Validation Error",
        "code": 422,
        "detail": {"errors": errors, "error": summarize(errors)},
    }


def _json(
    body: dict[str, Any], status_code: int, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        content=body, status_code=status_code, media_type=MediaType.JSON, headers=headers
    )


def _litestar_field_errors(exc: ValidationException) -> list[dict[str, Any]]:
    """Litestar reports `{"message", "key", "source"}` per problem; name the field instead."""
    errors: list[dict[str, Any]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key = item.get("key")
            # "data" is the handler's parameter name for the whole body, not a field.
            field = "body" if not key or (key == "data" and item.get("source") == "body") else key
            entry: dict[str, Any] = {"field": field, "reason": explain(str(item.get("message")))}
            if source := item.get("source"):
                entry["source"] = getattr(source, "value", str(source))
            errors.append(entry)
    if not errors:
        errors.append({"field": "body", "reason": exc.detail})
    return errors


def handle_app_error(_: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    if isinstance(exc, FieldError):
        return _json(validation_body(exc.errors), 422, exc.headers)
    return _json(error_body(exc.status_code, exc.error, **exc.extra), exc.status_code, exc.headers)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        return _json(validation_body(_litestar_field_errors(exc)), 422, exc.headers)
    status = exc.status_code
    if status == 413:
        handler = request.scope.get("route_handler")
        limit = (
            handler.resolve_request_max_body_size()
            if isinstance(handler, HTTPRouteHandler)
            else None
        )
        error = f"The request body is larger than the limit of {limit} bytes"
        return _json(error_body(413, error, limit=limit), 413)
    if exc.detail == CLIENT_DISCONNECTED:
        # Nobody is left to read an answer; 499 is what the access line then says.
        logger.info("client disconnected before its body was complete")
        return _json(error_body(499, "The client closed the request"), 499)
    if status >= 500:
        # Litestar's own 5xx (rare) keep their status but never their internals.
        logger.error("framework error", extra={"status": status, "error": exc.detail})
        return _json(error_body(status, "Internal server error"), status)
    return _json(error_body(status, exc.detail), status, exc.headers)


def handle_database_error(request: Request[Any, Any, Any], exc: PyMongoError) -> Response[Any]:
    """Unreachable, or past an operation's deadline (`timeoutMS`): the request was
    fine and may be retried, so 503 with Retry-After. Anything else is unexpected."""
    if not isinstance(exc, ConnectionFailure) and not exc.timeout:
        return handle_unexpected(request, exc)
    logger.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    error = "The database is unavailable right now; retry shortly"
    return _json(error_body(503, error), 503, {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(error_body(500, "Internal server error"), 500)


def handle_too_deep(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A body nested deeper than a decoder follows (Litestar's own decoding of a typed
    body, or a batch's items): the client's mistake, not the server's."""
    return handle_app_error(request, BadRequest("The body nests arrays or objects too deeply"))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    AppError: handle_app_error,
    RecursionError: handle_too_deep,
    HTTPException: handle_http_exception,
    PyMongoError: handle_database_error,
    Exception: handle_unexpected,
}


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The answer the app's exception handling gives `exc`, for a handler that answers
    several requests in one (the posts the gateway relays together) and must give each
    what it would have got alone."""
    for kind in type(exc).__mro__:
        handler = EXCEPTION_HANDLERS.get(kind)
        if handler is not None:
            return handler(request, exc)
    return handle_unexpected(request, exc)
