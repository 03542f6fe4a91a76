"""Guards that declare the roles they let through: the one access rule of each route,
published in its OpenAPI operation's `security` (services.common.web.openapi) and
walked by tests/e2e/test_credential_walk.py. Which roles exist is the research
domain's business (services.common.research.auth); this only carries their names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

# The guard attribute that declares which roles a route is for.
ROLES_ATTRIBUTE = "emogo_roles"

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def for_roles(guard: Guard, roles: Iterable[str]) -> Guard:
    """Declares on `guard` the roles it lets through (see ROLES_ATTRIBUTE)."""
    setattr(guard, ROLES_ATTRIBUTE, frozenset(str(role) for role in roles))
    return guard


def declared_roles(guard: Any) -> frozenset[str]:
    """The roles a guard lets through; a guard that declares none is a mistake found
    when the app is built, not at the first request."""
    roles = getattr(guard, ROLES_ATTRIBUTE, None)
    if not isinstance(roles, frozenset):
        name = getattr(guard, "__name__", repr(guard))
        raise TypeError(f"the guard {name} declares no roles (see for_roles)")
    return roles
