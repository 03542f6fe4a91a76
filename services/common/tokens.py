"""Credentials the admin service hands out, beside the environment's global tokens:
a participant's token (from an enrolment code) and a teaching assistant's viewer
token scoped to some studies.

Admin-service data, defined here because every service checks them. A token is a
long random value shown once; only its SHA-256 is stored (a 256-bit random value
needs no slow hash), and it is looked up by that digest, so no comparison of
secrets happens at all.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum

import pymongo
from beanie import Document
from pymongo import IndexModel

TOKEN_BYTES = 32
# Marks the kind of an issued token at a glance (and in secret scanners), like
# GitHub's `ghp_`: a leaked one is recognised and traced to its issue.
TOKEN_PREFIXES = {"participant": "emp_", "viewer": "emv_"}


class TokenKind(StrEnum):
    PARTICIPANT = "participant"
    VIEWER = "viewer"


def new_token(kind: TokenKind) -> str:
    return TOKEN_PREFIXES[kind] + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_id() -> str:
    """The public id of a token: what lists show and revocation names."""
    return "tok_" + secrets.token_hex(8)


class AccessToken(Document):
    token_id: str
    token_sha256: str
    kind: TokenKind
    # A person's name for it ("TA Alice"); a participant's token is named by its id.
    name: str
    study_ids: list[str]
    # A participant token's participant.
    user_id: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    class Settings:
        name = "access_tokens"
        indexes = [
            IndexModel([("token_sha256", pymongo.ASCENDING)], name="digest_unique", unique=True),
            IndexModel([("token_id", pymongo.ASCENDING)], name="token_id_unique", unique=True),
            IndexModel([("kind", pymongo.ASCENDING), ("created_at", 1)], name="kind_created"),
        ]
