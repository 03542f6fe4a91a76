"""OpenAPI for handlers that read their body themselves.

Batch endpoints take a JSON array or NDJSON and validate each record on its own, so
they cannot let Litestar decode the body; this documents the record schema anyway."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
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
