"""Who may call the admin service, and how often: the caller's credential (a role
token, or a user's token from authenticate_user), the guards built on it, and the
sign-in rate limit per client address."""

from __future__ import annotations

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.admin.companion import accounts
from services.admin.settings import AdminSettings
from services.common.research.auth import (
    CHALLENGE,
    PRINCIPAL_SCOPE_KEY,
    READERS,
    USER,
    Role,
    issued_principal,
    principal_from_header,
)
from services.common.web.clients import client_address
from services.common.web.errors import Forbidden, NotFound, Unauthorized
from services.common.web.guards import for_roles
from services.common.web.schemas import Principal


def settings_of(request: ASGIConnection) -> AdminSettings:
    return request.app.state.settings


async def caller(request: ASGIConnection) -> Principal:
    """Who sends the request: a role credential, a participant's token, or a user's token
    from authenticate_user.
    Found once per request (a user's token costs a database read)."""
    cached = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(cached, Principal):
        return cached
    principal = await _find_caller(request)
    request.scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]  # our own key in Litestar's scope
    return principal


async def _find_caller(request: ASGIConnection) -> Principal:
    header = request.headers.get("authorization")
    principal = principal_from_header(header, settings_of(request).credentials)
    if principal is not None:
        return principal
    principal = await issued_principal(header, request.app.state.issued_tokens)
    if principal is not None:
        return principal
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        user_id = await accounts.session_user(token.strip())
        if user_id is not None:
            return Principal(role=USER, user_id=user_id)
    message = "Invalid credentials" if header else "Credentials required"
    raise Unauthorized(message, headers=CHALLENGE)


async def authorize_user(request: Request, user_id: str) -> None:
    """Lets through the admin and `user_id`'s own token. Another user's token learns
    nothing: it gets the same 404 as a user that does not exist."""
    if settings_of(request).open_user_endpoints:
        return
    principal = await caller(request)
    if principal.role == Role.ADMIN:
        return
    if principal.role != USER:
        raise Forbidden(f"The {principal.role} role may not do this; it needs: admin")
    if principal.user_id != user_id:
        raise NotFound(f"User {user_id} not found.")


async def signed_in(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A guard: the admin's or a companion-app user's credential, checked before the body
    is read, so a caller without one learns 401 (a research credential 403) and nothing
    about the body's shape. Which user's data it may reach is decided once the body
    names the user (`authorize_user`)."""
    if settings_of(connection).open_user_endpoints:
        return
    principal = await caller(connection)
    if principal.role not in (Role.ADMIN, USER):
        raise Forbidden(
            f"The {principal.role} role may not do this; it needs: admin, or the user's own token"
        )


# Any credential passes the guard, but only the admin's and the user's own reach the data.
SIGNED_IN = [for_roles(signed_in, (Role.ADMIN, USER))]


async def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A guard: the admin credential only (a user's token gets 403, not 401)."""
    principal = await caller(connection)
    if principal.role != Role.ADMIN:
        raise Forbidden(f"The {principal.role} role may not do this; it needs: admin")


ADMIN_ONLY = [for_roles(admin_only, (Role.ADMIN,))]


async def readers(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A guard: the admin or a viewer (a study viewer then sees its studies only)."""
    principal = await caller(connection)
    if principal.role not in READERS:
        raise Forbidden(f"The {principal.role} role may not do this; it needs: admin, viewer")


READERS_ONLY = [for_roles(readers, READERS)]


async def limit_sign_in(request: Request) -> None:
    """Sign-in, registration and password changes per client address, counted in
    MongoDB so every worker and replica applies one limit."""
    await request.app.state.sign_in_limiter.check(client_address(request))
