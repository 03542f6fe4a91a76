"""A handler's JSON body, its type named once: in the handler's signature, as
`Record[T]`. `@json_body` reads the body as `T` with the per-field errors of
services.common.web.validation (docs/adr/0005) and documents the same `T` as the
operation's request body, so the reading and the document cannot differ.

    @json_body
    @post("/studies")
    async def create(self, study: Record[StudyIn]) -> StudyView: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints, overload

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


Check = Callable[[Request[Any, Any, Any]], Awaitable[None]]


@overload
def json_body(handler: HTTPRouteHandler) -> HTTPRouteHandler: ...


@overload
def json_body(
    *, first: Check | None = None, optional: bool = False
) -> Callable[[HTTPRouteHandler], HTTPRouteHandler]: ...


def json_body(
    handler: HTTPRouteHandler | None = None,
    *,
    first: Check | None = None,
    optional: bool = False,
) -> HTTPRouteHandler | Callable[[HTTPRouteHandler], HTTPRouteHandler]:
    """Gives `handler` its JSON body as the parameter it declares `Record[T]`.

    `first` runs before the body is read (a rate limit, which must count a request
    whose body is refused too); with `optional`, no body at all reads as `T()` and the
    document says the body may be left out."""

    def wrap(handler: HTTPRouteHandler) -> HTTPRouteHandler:
        name, record_type = _record_parameter(handler)

        async def provide_record(request: Request[Any, Any, Any]) -> Any:
            if first is not None:
                await first(request)
            if optional and not await request.body():
                return record_type()
            return await read_record(request, record_type)

        handler.operation_class = documented_body(record_type, required=not optional)
        handler.dependencies = {**(handler.dependencies or {}), name: Provide(provide_record)}
        return handler

    return wrap(handler) if handler is not None else wrap
