"""OpenAPI beyond what Litestar infers: the form of ids in paths, and the bodies of
handlers that read their body themselves.

Batch endpoints take a JSON array or NDJSON and validate each record on its own, so
they cannot let Litestar decode the body; this documents the record schema anyway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Litestar
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import PathParameter

from services.common.web.guards import declared_roles
from services.common.web.schemas import worded

NDJSON_MEDIA_TYPE = "application/x-ndjson"
TEXT: dict[str, Any] = {"type": "string"}
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
EMPTY_TEXT: dict[str, Any] = {"type": "string", "max_length": 0}

# Ids in a path, documented with their form so that clients generated from the
# document know it (as services.common.research.filters does for participants and studies).
# Only documented, not a `pattern` Litestar would check: the services check them and
# answer 422 with their own message naming the field.
RecordIdPath = Annotated[
    str,
    PathParameter(
        description="The record's id: 24 hexadecimal characters.",
        schema_extra={"pattern": worded("^[0-9a-fA-F]{24}$", "24 hexadecimal characters")},
    ),
]
VlogIdPath = Annotated[
    str,
    PathParameter(
        description="The vlog's id: 24 hexadecimal characters, also as the seed's file "
        "name `<id>.mp4`.",
        schema_extra={
            "pattern": worded(
                "^[0-9a-fA-F]{24}(\\.[^.]*)?$",
                "24 hexadecimal characters, or those and a file extension",
            )
        },
    ),
]


def _record_schema(record_type: type) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [record_type], ref_template="#/components/schemas/{name}"
    )
    schema: dict[str, Any] = components[record_type.__name__]
    return schema


def _operation_with_body(
    content: dict[str, OpenAPIMediaType], *, required: bool = True
) -> type[Operation]:
    body = RequestBody(content=content, required=required)

    @dataclass
    class OperationWithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return OperationWithBody


BATCH_ITEM_DESCRIPTION = (
    "A record (in NDJSON, one line). An item that is not a valid record does not fail "
    "the batch: it is reported in `results` with the reason, and the rest are stored."
)


def documented_body(
    record_type: type, *, batch: bool = False, required: bool = True
) -> type[Operation]:
    """An Operation class whose request body is `record_type` (or a batch of them)."""
    record_schema = _record_schema(record_type)
    if batch:
        # Any array is taken: each item is checked on its own, stored if it is a valid
        # record and reported by its index if not, so the answer is 200 either way.
        item = {"anyOf": [record_schema, {}], "description": BATCH_ITEM_DESCRIPTION}
        array = {"type": "array", "items": item}
        # NDJSON (one record per line) is taken too, as the operation's description
        # says; it is not listed, since no JSON Schema can say what it may not be.
        content = {"application/json": OpenAPIMediaType(schema=array)}  # type: ignore[arg-type]  # msgspec's schema dict in place of Litestar's Schema
    else:
        content = {"application/json": OpenAPIMediaType(schema=record_schema)}  # type: ignore[arg-type]  # msgspec's schema dict in place of Litestar's Schema
    return _operation_with_body(content, required=required)


def documented_object(description: str) -> type[Operation]:
    """An Operation class whose request body is any JSON object, as `description` says."""
    schema = {"type": "object", "description": description}
    return _operation_with_body({"application/json": OpenAPIMediaType(schema=schema)})  # type: ignore[arg-type]  # msgspec's schema dict in place of Litestar's Schema


def documented_form(fields_type: type, file_field: str, file_description: str) -> type[Operation]:
    """An Operation class whose body is a multipart form: `fields_type`'s fields as
    text parts, and one file part."""
    schema = dict(_record_schema(fields_type))
    schema["properties"] = {
        **schema.get("properties", {}),
        file_field: {**BINARY, "description": file_description},
    }
    schema["required"] = [*schema.get("required", []), file_field]
    return _operation_with_body(
        {"multipart/form-data": OpenAPIMediaType(schema=schema)}  # type: ignore[arg-type]  # msgspec's schema dict in place of Litestar's Schema
    )


def documented_bytes(*media_types: str, required: bool = True) -> type[Operation]:
    """An Operation class whose body is a file's bytes, in any of `media_types`."""
    return _operation_with_body(
        {media_type: OpenAPIMediaType(schema=BINARY) for media_type in media_types},  # type: ignore[arg-type]  # msgspec's schema dict in place of Litestar's Schema
        required=required,
    )


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
    408: "The request did not arrive in time (headers, or a body too slow)",
    409: "Already exists (or, for a resumable upload, not at this offset)",
    410: "Gone: it has expired",
    412: "A required protocol header is missing (Tus-Resumable)",
    413: "Body too large",
    414: "The URL is too long",
    415: "Unsupported content",
    429: "Too many requests (see Retry-After)",
    460: "The bytes do not match their Upload-Checksum (tus)",
    431: "The request headers are too large or too many",
    502: "A service gave no valid answer",
    503: "A dependency is unavailable",
    504: "A service did not answer in time",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a handler can answer, with their body schema (and
    no examples made up by Litestar: a document shows real examples or none)."""
    responses = {
        code: ResponseSpec(
            generate_examples=False, data_container=ErrorEnvelope, description=ERROR_MEANINGS[code]
        )
        for code in codes
    }
    responses[422] = ResponseSpec(
        generate_examples=False,
        data_container=ValidationEnvelope,
        description="Invalid input: each field and why",
    )
    return responses


# --- completing every operation's document ---------------------------------------------

# A handler's `opt` key: media types its success response is also served as (a page
# that answers HTML or JSON, a download in several formats), with their schema.
ALSO_SERVED_AS = "also_served_as"
# A handler's `opt` key: its success may also be an empty body (the seed's clients'
# reply, on a path whose newer clients get JSON).
ALSO_EMPTY = "also_answers_with_an_empty_body"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
GATEWAY_ERRORS = (502, 503, 504)


def _roles(handler: HTTPRouteHandler) -> frozenset[str] | None:
    """The roles a handler is for (every guard must let a caller through), or None for
    a handler open to anyone."""
    guards = handler.resolve_guards()
    if not guards:
        return None
    roles = declared_roles(guards[0])
    for guard in guards[1:]:
        roles &= declared_roles(guard)
    return roles


def _has_path_parameters(handler: HTTPRouteHandler) -> bool:
    return any("{" in path for path in handler.paths)


def document_errors(app: Litestar, dependency_errors: tuple[int, ...]) -> None:
    """Every operation of `app` documents every status it can answer, in the envelope.

    What a handler can answer follows from what it is: a guard (401, 403), a path
    parameter (404), a body (400, 413, 415), query and path validation (422), and
    what its dependencies do when they fail (`dependency_errors`: 503 for the database,
    502/503/504 for the gateway's services). What a handler declares itself wins."""
    roles_of: dict[str, frozenset[str] | None] = {}
    also_served: dict[str, dict[str, dict[str, Any]]] = {}
    also_empty: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or not handler.resolve_include_in_schema():
                continue
            operation_id = handler.operation_id if isinstance(handler.operation_id, str) else ""
            # 414 and 431: limits every connection has (services.common.runtime.server).
            codes = {400, 414, 431, *dependency_errors}
            roles_of[operation_id] = _roles(handler)
            if roles_of[operation_id] is not None:
                codes |= {401, 403}
            if _has_path_parameters(handler):
                codes.add(404)
            if handler.http_methods & WRITE_METHODS:
                codes |= {408, 413, 415}
            handler.responses = {**error_responses(*sorted(codes)), **(handler.responses or {})}
            if ALSO_SERVED_AS in handler.opt:
                also_served[operation_id] = handler.opt[ALSO_SERVED_AS]
            if handler.opt.get(ALSO_EMPTY):
                also_empty.add(operation_id)

    def complete() -> None:
        _complete_document(app.openapi_schema, roles_of, also_served, also_empty)

    app.on_startup.append(complete)


def _complete_document(
    document: OpenAPI,
    roles_of: dict[str, frozenset[str] | None],
    also_served: dict[str, dict[str, dict[str, Any]]],
    also_empty: set[str],
) -> None:
    """What only the finished document can say: who each operation is for (its security
    requirement names the roles, as OpenAPI 3.1 lets a non-OAuth scheme; none for an
    operation open to anyone), empty bodies no content, and the other media types served."""
    for item in (document.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            if operation.operation_id in roles_of:
                roles = roles_of[operation.operation_id]
                operation.security = (
                    [] if roles is None else [{"bearer": sorted(roles)}, {"basic": sorted(roles)}]
                )
            for status, response in (operation.responses or {}).items():
                if not isinstance(response, OpenAPIResponse):
                    continue
                if _is_empty(response):
                    response.content = None
                if status.startswith("2"):
                    _document_reply_variants(response)
                    if operation.operation_id in also_empty and response.content:
                        response.content["text/plain"] = OpenAPIMediaType(
                            schema=Schema(**EMPTY_TEXT)
                        )
                if status.startswith("2") and operation.operation_id in also_served:
                    response.content = {
                        media_type: OpenAPIMediaType(schema=Schema(**schema))
                        for media_type, schema in also_served[operation.operation_id].items()
                    }


def _document_reply_variants(response: OpenAPIResponse) -> None:
    """A reply that takes one of several shapes (the admin service answers the seed's
    clients and the current front end on the same path) matches `anyOf` them, not
    exactly one; an empty variant (the seed's empty 200) is an empty `text/plain`."""
    media = (response.content or {}).get("application/json")
    if media is None or not isinstance(media.schema, Schema) or not media.schema.one_of:
        return
    variants = media.schema.one_of
    shaped = [v for v in variants if not (isinstance(v, Schema) and v.type == OpenAPIType.NULL)]
    schema = shaped[0] if len(shaped) == 1 else Schema(any_of=shaped)
    response.content = {"application/json": OpenAPIMediaType(schema=schema)}
    if len(shaped) < len(variants):
        response.content["text/plain"] = OpenAPIMediaType(schema=Schema(**EMPTY_TEXT))


def _is_empty(response: OpenAPIResponse) -> bool:
    content = response.content or {}
    return bool(content) and all(
        isinstance(media.schema, Schema) and media.schema.type == OpenAPIType.NULL
        for media in content.values()
    )
