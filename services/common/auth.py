"""Role-based access: `admin`, `viewer` (read and export), `device` (write telemetry).

A credential is `Authorization: Bearer <token>`, or HTTP Basic with the role as the
user name and the token as the password, so a browser can sign in to the export
page and click its links. Tokens are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from enum import StrEnum

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.common.errors import Forbidden, Unauthorized
from services.common.schemas import Principal
from services.common.settings import Credentials

REALM = "EmoGo"
# Where a request's proven principal is kept, so it is worked out once per request.
PRINCIPAL_SCOPE_KEY = "emogo_principal"
CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    DEVICE = "device"


READERS = (Role.ADMIN, Role.VIEWER)
WRITERS = (Role.ADMIN, Role.DEVICE)


def _role_for_token(token: str, credentials: Credentials) -> Role | None:
    found: Role | None = None
    # Compare with every token so timing does not reveal which one matched.
    for role, expected in credentials.by_role().items():
        if hmac.compare_digest(token.encode(), expected.encode()):
            found = Role(role)
    return found


def principal_from_header(authorization: str | None, credentials: Credentials) -> Principal | None:
    """The principal an `Authorization` header proves, or None when it proves nothing."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        role = _role_for_token(value, credentials)
        return Principal(role=role) if role else None
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        role = _role_for_token(password, credentials) if sep else None
        # The user name must be the role the token belongs to.
        if role and hmac.compare_digest(username.encode(), role.value.encode()):
            return Principal(role=role)
    return None


def authenticate(connection: ASGIConnection) -> Principal:
    """The request's principal; 401 with a Basic challenge when there is none."""
    cached = connection.scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(cached, Principal):
        return cached
    credentials: Credentials = connection.app.state.settings.credentials
    principal = principal_from_header(connection.headers.get("authorization"), credentials)
    if principal is None:
        message = (
            "Invalid credentials"
            if connection.headers.get("authorization")
            else "Credentials required: send Authorization: Bearer <token> or HTTP Basic"
        )
        raise Unauthorized(message, headers=CHALLENGE)
    connection.scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]
    return principal


def requires(*roles: Role) -> Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]:
    """A Litestar guard that lets through only the given roles. Guards are coroutines:
    Litestar runs a plain function guard in a worker thread, a hop per request."""
    allowed = frozenset(roles)

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        principal = authenticate(connection)
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"The {principal.role} role may not do this; it needs: {names}")

    guard.__name__ = f"requires_{'_or_'.join(sorted(r.value for r in allowed))}"
    return guard
