"""Role-based access: `admin`, `viewer` (read and export), `device` (write telemetry),
and `participant` (one enrolled participant: writes and reads only their own data).

A credential is `Authorization: Bearer <token>`, or HTTP Basic with the role as the
user name and the token as the password, so a browser can sign in to the export
page and click its links. The environment's global tokens are compared in constant
time; tokens the admin service issued (services.common.research.tokens) are looked up by
their SHA-256 in every service that has the database.

Owned by no service: every service checks credentials with it; the admin service issues
the tokens it looks up.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from enum import StrEnum
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.common.research.studies import DEFAULT_STUDY, record_study
from services.common.research.tokens import IssuedTokens, TokenFinder, TokenKind, issued_token_in
from services.common.runtime.settings import Credentials
from services.common.web.errors import Forbidden, Unauthorized
from services.common.web.guards import Guard, for_roles
from services.common.web.schemas import Principal

REALM = "EmoGo"
# Where a request's proven principal is kept, so it is worked out once per request.
PRINCIPAL_SCOPE_KEY = "emogo_principal"
CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    DEVICE = "device"
    PARTICIPANT = "participant"


# A companion-app user's own token (from authenticate_user): only the admin service
# knows it, and it reaches only that user's data there.
USER = "user"

READERS = (Role.ADMIN, Role.VIEWER)
WRITERS = (Role.ADMIN, Role.DEVICE, Role.PARTICIPANT)
# Routes a participant may also read, limited to their own records.
OWN_READERS = (*READERS, Role.PARTICIPANT)


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


def is_viewer(authorization: str | None, credentials: Credentials) -> bool:
    """Whether a header carries a viewer's credential (the environment's viewer token or
    an issued one, by its shape: the services check that it is live)."""
    principal = principal_from_header(authorization, credentials)
    if principal is not None:
        return principal.role == Role.VIEWER
    return issued_token_in(authorization, TokenKind.VIEWER) is not None


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The request's principal; 401 with a Basic challenge when there is none."""
    cached = connection.scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(cached, Principal):
        return cached
    principal = await principal_in(connection, connection.headers.get("authorization"))
    connection.scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]  # our own key in Litestar's scope
    return principal


async def principal_in(
    connection: ASGIConnection[Any, Any, Any, Any], header: str | None
) -> Principal:
    """The principal an `Authorization` header proves to this service; 401 with a Basic
    challenge when it proves none."""
    state = connection.app.state
    principal = principal_from_header(header, state.settings.credentials)
    issued: TokenFinder | None = state.get("issued_tokens")
    if principal is None and issued is not None:
        principal = await issued_principal(header, issued)
    if principal is None:
        message = (
            "Invalid credentials"
            if header
            else "Credentials required: send Authorization: Bearer <token> or HTTP Basic"
        )
        raise Unauthorized(message, headers=CHALLENGE)
    return principal


async def issued_principal(header: str | None, issued: TokenFinder) -> Principal | None:
    """The participant or study viewer a `Bearer emp_...`/`emv_...` header proves."""
    token = issued_token_in(header)
    if token is None:
        return None
    document = await issued.find(token)
    if document is None:
        return None
    role = Role.PARTICIPANT if document["kind"] == TokenKind.PARTICIPANT else Role.VIEWER
    return Principal(
        role=role,
        user_id=document.get("user_id"),
        study_ids=tuple(document["study_ids"]),
        token_id=document["token_id"],
        token_name=document.get("name"),
    )


def requires(*roles: Role) -> Guard:
    """A Litestar guard that lets through only the given roles. Guards are coroutines:
    Litestar runs a plain function guard in a worker thread, a hop per request."""
    allowed = frozenset(roles)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        _require_role(await authenticate(connection), allowed)

    guard.__name__ = f"requires_{'_or_'.join(sorted(r.value for r in allowed))}"
    return for_roles(guard, allowed)


def _require_role(principal: Principal, allowed: frozenset[Role]) -> None:
    if principal.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"The {principal.role} role may not do this; it needs: {names}")


def may_write() -> Guard:
    """The guard of every write: a writer role, and for a participant an open study."""
    writers = frozenset(WRITERS)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        await _check_writer(connection, await authenticate(connection))

    guard.__name__ = "may_write"
    return for_roles(guard, writers)


async def writer_in(connection: ASGIConnection[Any, Any, Any, Any], header: str) -> Principal:
    """The writer a relayed post's own `Authorization` header proves, checked as
    `may_write` checks a request's (401, 403 otherwise)."""
    principal = await principal_in(connection, header)
    await _check_writer(connection, principal)
    return principal


async def _check_writer(
    connection: ASGIConnection[Any, Any, Any, Any], principal: Principal
) -> None:
    """A writer role, and for a participant an open study."""
    _require_role(principal, frozenset(WRITERS))
    if principal.role != Role.PARTICIPANT:
        return
    issued: IssuedTokens = connection.app.state.issued_tokens
    for study_id in principal.study_ids or ():
        if await issued.study_is_closed(study_id):
            raise Forbidden(f"The study {study_id!r} is closed: it takes no new data")


def from_gateway(what: str) -> Guard:
    """The guard of what only the gateway may do: its own credential (EMOGO_SERVICE_TOKEN,
    in the service's settings), never a role token, not even the admin's."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        scheme, _sep, token = (connection.headers.get("authorization") or "").partition(" ")
        expected: str = connection.app.state.settings.service_token
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Credentials required", headers=CHALLENGE)
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise Forbidden(f"Only the gateway {what}")

    guard.__name__ = "from_gateway"
    return for_roles(guard, ("service",))


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the request's guard proved."""
    principal = connection.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise Unauthorized("Credentials required", headers=CHALLENGE)
    return principal


def whose(principal: Principal, user_id: Any) -> Any:
    """The participant a write or read is for. With a participant token: its own
    participant when none is named, and 403 when another one is; with any other
    credential, whom the request names."""
    if principal.role != Role.PARTICIPANT:
        return user_id
    if user_id is None or user_id == principal.user_id:
        return principal.user_id
    raise Forbidden(
        f"A participant token reaches participant {principal.user_id!r} only, not {user_id!r}",
        extra={"field": "user_id"},
    )


def written_as(principal: Principal, record: Any) -> Any:
    """A record (a JSON object or a form's fields) as its writer may store it: with a
    participant token, the participant's id filled in or another one refused (403)."""
    if principal.role != Role.PARTICIPANT or not isinstance(record, dict):
        return record
    return {**record, "user_id": whose(principal, record.get("user_id"))}


def own_scope(principal: Principal, study_id: str | None = None) -> dict[str, Any]:
    """What a query must also match for this principal: with a participant token, the
    participant's own records of their own study (another study's participant may
    have the same id); with a study viewer token, records of its studies (those of
    `default` carry no study); nothing more for a global token. `study_id` narrows it
    to one study the credential covers (403 for another)."""
    if study_id is not None:
        if principal.study_ids is not None and study_id not in principal.study_ids:
            raise Forbidden(
                f"This credential does not cover study {study_id!r}",
                extra={"field": "study_id"},
            )
        one = {"study_id": record_study(study_id)}
        if principal.role == Role.PARTICIPANT:
            one["user_id"] = principal.user_id
        return one
    if principal.study_ids is None:
        return {}
    if principal.role == Role.PARTICIPANT:
        return {"user_id": principal.user_id, "study_id": study_of(principal)}
    studies: list[str | None] = [s for s in principal.study_ids if s != DEFAULT_STUDY]
    if DEFAULT_STUDY in principal.study_ids:
        studies.append(None)  # matches a record without a study, as MongoDB matches null
    # One study as an equality: the embedded database reads the `study_time` index for
    # it, and sorts the matches of an `$in` itself.
    return {"study_id": studies[0] if len(studies) == 1 else {"$in": studies}}


def edit_scope(principal: Principal) -> dict[str, Any]:
    """What a record must also match for this principal to change it: the admin changes
    any; a participant their own; any other writer only what that same credential wrote
    (`written_by`), so the shared device token cannot reach another study's records.
    A record outside the scope is 404, as if absent."""
    if principal.role == Role.ADMIN:
        return {}
    if principal.role == Role.PARTICIPANT:
        return own_scope(principal)
    return {"written_by": credential_id(principal)}


def credential_id(principal: Principal) -> str:
    """What names a credential in records (the audit trail, deletion receipts): an
    issued token's id, or `env:<role>` for the environment's token of a role. Never
    the secret."""
    return principal.token_id or f"env:{principal.role}"


def study_of(principal: Principal) -> str | None:
    """The study a principal's writes are stamped with: a participant's own; none for
    the global tokens and for participants of `default`, whose records carry no study."""
    if principal.role != Role.PARTICIPANT or not principal.study_ids:
        return None
    return record_study(principal.study_ids[0])
