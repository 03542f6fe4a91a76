"""What any handler may be given about its caller, registered by every service with
the database: the principal the credential proves, and how what the caller is sent is
disguised (None: as stored). Handlers declare `principal: CallerPrincipal`,
`disguise: CallerDisguise`."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from services.common.research.auth import principal_of
from services.common.research.privacy import Disguise, disguise_of
from services.common.web.given import Given
from services.common.web.schemas import Principal

CallerPrincipal = Given[Principal]
CallerDisguise = Given[Disguise | None]


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The principal the route's guard proved (guards run before dependencies)."""
    return principal_of(request)


async def provide_disguise(request: Request[Any, Any, Any]) -> Disguise | None:
    return await disguise_of(request)


CALLER_DEPENDENCIES = {
    "principal": Provide(provide_principal),
    "disguise": Provide(provide_disguise),
}
