"""Tokens the admin service issues (participants' from their codes, and viewer tokens
scoped to studies), and the routes for the latter, for the admin only: mint (the
token is shown once), list (names, scopes, creation and last use), revoke."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath

from services.admin.access import ADMIN_ONLY
from services.admin.research.schemas import ViewerTokenIn, ViewerTokenIssued, ViewerTokenView
from services.common.research.studies import Study
from services.common.research.tokens import (
    AccessToken,
    TokenKind,
    new_token,
    new_token_id,
    revoke_token,
    token_digest,
)
from services.common.web.bodies import Record, json_body
from services.common.web.errors import NotFound, field_error
from services.common.web.openapi import error_responses
from services.common.web.timestamps import stored_now


async def issue_token(
    kind: TokenKind, name: str, study_ids: list[str], user_id: str | None = None
) -> tuple[str, dict]:
    """A new token, stored by its digest only: (the token, its stored document)."""
    token = new_token(kind)
    document = {
        "token_id": new_token_id(),
        "token_sha256": token_digest(token),
        "kind": kind.value,
        "name": name,
        "study_ids": study_ids,
        "user_id": user_id,
        "created_at": stored_now(),
        "last_used_at": None,
        "revoked_at": None,
    }
    await AccessToken.get_pymongo_collection().insert_one(document)
    return token, document


def _view(document: dict) -> ViewerTokenView:
    return msgspec.convert(document, ViewerTokenView)


class ViewerTokenController(Controller):
    path = "/api/viewer-tokens"
    tags = ["studies"]
    guards = ADMIN_ONLY

    @json_body
    @post(
        "/",
        operation_id="createViewerToken",
        summary="A viewer token for some studies (shown once)",
        responses=error_responses(401, 403),
        status_code=201,
    )
    async def create(self, request: Request, wanted: Record[ViewerTokenIn]) -> ViewerTokenIssued:
        study_ids = list(dict.fromkeys(wanted.study_ids))
        known = {
            doc["study_id"]
            async for doc in Study.get_pymongo_collection().find(
                {"study_id": {"$in": study_ids}}, {"study_id": 1}
            )
        }
        unknown = [study_id for study_id in study_ids if study_id not in known]
        if unknown:
            raise field_error("study_ids", f"no such study: {', '.join(unknown)}")
        token, document = await issue_token(TokenKind.VIEWER, wanted.name, study_ids)
        return ViewerTokenIssued(**msgspec.structs.asdict(_view(document)), token=token)

    @get(
        "/",
        operation_id="listViewerTokens",
        summary="Every viewer token, newest first (never the tokens themselves)",
        responses=error_responses(401, 403),
    )
    async def listing(self) -> list[ViewerTokenView]:
        cursor = (
            AccessToken.get_pymongo_collection()
            .find({"kind": TokenKind.VIEWER.value})
            .sort("created_at", -1)
        )
        return [_view(document) async for document in cursor]

    @delete(
        "/{token_id:str}",
        operation_id="revokeViewerToken",
        summary="Revoke a viewer token (revoking again changes nothing)",
        responses=error_responses(401, 403, 404),
        status_code=200,
    )
    async def revoke(self, token_id: FromPath[str]) -> ViewerTokenView:
        tokens = AccessToken.get_pymongo_collection()
        query = {"token_id": token_id, "kind": TokenKind.VIEWER.value}
        if await tokens.find_one(query, {"_id": 1}) is None:
            raise NotFound(f"No viewer token {token_id!r}")
        await revoke_token(token_id)
        revoked = await tokens.find_one(query)
        assert revoked is not None  # revoking keeps the document
        return _view(revoked)
