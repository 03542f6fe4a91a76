"""One error hierarchy for every service, mapped to HTTP in one place.

Every error leaves as the admin backend's envelope, which the whole platform uses:
    {"message": "HTTP Error 404", "code": 404, "detail": {"error": "<text>"}}
and validation errors as
    {"message": "Validation Error", "code": 422, "detail": {"errors": [...], "error": "<summary>"}}
No traceback ever reaches a response; unexpected errors are logged with the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

logger = logging.getLogger("emogo.errors")


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


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMediaType(AppError):
    status_code = 415


class RangeNotSatisfiable(AppError):
    status_code = 416


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
) -> Response:
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
            entry: dict[str, Any] = {"field": field, "reason": item.get("message")}
            if item.get("source"):
                entry["source"] = str(item["source"])
            errors.append(entry)
    if not errors:
        errors.append({"field": "body", "reason": exc.detail})
    return errors


def handle_app_error(_: Request, exc: AppError) -> Response:
    if isinstance(exc, FieldError):
        return _json(validation_body(exc.errors), 422, exc.headers)
    return _json(error_body(exc.status_code, exc.error, **exc.extra), exc.status_code, exc.headers)


def handle_http_exception(_: Request, exc: HTTPException) -> Response:
    if isinstance(exc, ValidationException):
        return _json(validation_body(_litestar_field_errors(exc)), 422, exc.headers)
    status = exc.status_code
    if status >= 500:
        # Litestar's own 5xx (rare) keep their status but never their internals.
        logger.error("framework error", extra={"status": status, "error": exc.detail})
        return _json(error_body(status, "Internal server error"), status)
    return _json(error_body(status, exc.detail), status, exc.headers)


def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(error_body(500, "Internal server error"), 500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    AppError: handle_app_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
