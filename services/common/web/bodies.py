"""A handler's JSON body, its type named once: in the handler's signature, as
`Record[T]`. `@json_body` reads the body as `T` with the per-field errors of
services.common.web.validation (docs/adr/0005) and documents the same `T` as the
operation's request body, so the reading and the document cannot differ.

    @json_body
    @post("/studies")
    async def create(self, study: Record[StudyIn]) -> StudyView: ...
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from litestar import Request
from litestar.di import Dependency, Provide
from litestar.handlers import HTTPRouteHandler

from services.common.web.openapi import documented_body
from services.common.web.validation import read_record

T = TypeVar("T")


class _RecordMarker:
    """Marks the parameter `@json_body` provides."""


Record = Annotated[T, Dependency(kind="named"), _RecordMarker()]


def _record_parameter(handler: HTTPRouteHandler) -> tuple[str, type[Any]]:
    hints = get_type_hints(handler.fn, include_extras=True)
    for name, hint in hints.items():
        if get_origin(hint) is Annotated and any(
            isinstance(extra, _RecordMarker) for extra in get_args(hint)[1:]
        ):
            record_type: type[Any] = get_args(hint)[0]
            return name, record_type
    raise TypeError(f"{handler.handler_name} has no parameter declared Record[...]")


def json_body(handler: HTTPRouteHandler) -> HTTPRouteHandler:
    """Gives `handler` its JSON body as the parameter it declares `Record[T]`."""
    name, record_type = _record_parameter(handler)

    async def provide_record(request: Request[Any, Any, Any]) -> Any:
        return await read_record(request, record_type)

    handler.operation_class = documented_body(record_type)
    handler.dependencies = {**(handler.dependencies or {}), name: Provide(provide_record)}
    return handler
