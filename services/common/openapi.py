"""OpenAPI for handlers that read their body themselves.

Batch endpoints take a JSON array or NDJSON and validate each record on its own, so
they cannot let Litestar decode the body; this documents the record schema anyway."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody

NDJSON_MEDIA_TYPE = "application/x-ndjson"


def documented_body(record_type: type, *, batch: bool = False) -> type[Operation]:
    """An Operation class whose request body is `record_type` (or a batch of them)."""
    _, components = msgspec.json.schema_components(
        [record_type], ref_template="#/components/schemas/{name}"
    )
    record_schema = components[record_type.__name__]
    if batch:
        content = {
            "application/json": OpenAPIMediaType(
                schema={"type": "array", "items": record_schema}  # type: ignore[arg-type]
            ),
            NDJSON_MEDIA_TYPE: OpenAPIMediaType(schema=record_schema),  # type: ignore[arg-type]
        }
    else:
        content = {"application/json": OpenAPIMediaType(schema=record_schema)}  # type: ignore[arg-type]
    body = RequestBody(content=content, required=True)

    @dataclass
    class OperationWithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return OperationWithBody


class ErrorDetail(msgspec.Struct, kw_only=True):
    error: str


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    """Every error: `{"message": "HTTP Error 404", "code": 404, "detail": {"error": ...}}`."""

    message: str
    code: int
    detail: ErrorDetail


class FieldProblem(msgspec.Struct, kw_only=True):
    field: str
    reason: str
    source: str | None = None


class ValidationDetail(msgspec.Struct, kw_only=True):
    errors: list[FieldProblem]
    error: str


class ValidationEnvelope(msgspec.Struct, kw_only=True):
    """Invalid input: `{"message": "Validation Error", "code": 422, "detail": {...}}`."""

    message: str
    code: int
    detail: ValidationDetail


ERROR_MEANINGS = {
    400: "Bad request (the text says why)",
    401: "No credential, or not a valid one",
    403: "The credential may not do this",
    404: "Not found (also another user's data)",
    409: "Already exists",
    413: "Body too large",
    415: "Unsupported content",
    429: "Too many requests (see Retry-After)",
    503: "A dependency is unavailable",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a handler can answer, with their body schema."""
    responses = {
        code: ResponseSpec(data_container=ErrorEnvelope, description=ERROR_MEANINGS[code])
        for code in codes
    }
    responses[422] = ResponseSpec(
        data_container=ValidationEnvelope, description="Invalid input: each field and why"
    )
    return responses
