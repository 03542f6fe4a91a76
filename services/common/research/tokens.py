"""Credentials the admin service hands out, beside the environment's global tokens:
a participant's token (from an enrolment code) and a teaching assistant's viewer
token scoped to some studies.

Admin-service data, defined here because every service checks them. A token is a
long random value shown once; only its SHA-256 is stored (a 256-bit random value
needs no slow hash), and it is looked up by that digest, so no comparison of
secrets happens at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import pymongo
from beanie import Document
from pymongo import IndexModel
from pymongo.errors import PyMongoError

from services.common.research.studies import Study, StudyStatus
from services.common.runtime.database import fail_fast_from_now
from services.common.web.timestamps import stored_now

logger = logging.getLogger("emogo.auth")

TOKEN_BYTES = 32
# Marks the kind of an issued token at a glance (and in secret scanners), like
# GitHub's `ghp_`: a leaked one is recognised and traced to its issue.
TOKEN_PREFIXES = {"participant": "emp_", "viewer": "emv_"}


class TokenKind(StrEnum):
    PARTICIPANT = "participant"
    VIEWER = "viewer"


def new_token(kind: TokenKind) -> str:
    return TOKEN_PREFIXES[kind] + secrets.token_urlsafe(TOKEN_BYTES)


def issued_token_in(header: str | None, *kinds: TokenKind) -> str | None:
    """The token of a `Bearer` header when it has the shape of an issued one (of
    `kinds`, else of any kind); None for anything else, such as a global token."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    prefixes = tuple(TOKEN_PREFIXES[kind] for kind in kinds or TokenKind)
    return token if scheme.lower() == "bearer" and token.startswith(prefixes) else None


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


# How long a process trusts what it read about a token or a study. Closing a study or
# changing its settings takes effect everywhere within this bound.
CACHE_SECONDS = 5.0
# How often a process asks whether any token was revoked since it last looked (one
# read of one document, however many requests arrive): when one was, it forgets
# every token it knew. Revoking a token, withdrawing a participant or re-issuing a
# code so takes effect everywhere within this bound, plus the requests under way.
REVOCATION_CHECK_SECONDS = 0.25
REVOCATION_BOUND_SECONDS = 1.0
REVOCATIONS_ID = "revocations"
# `last_used_at` is written at most this often per token and process: a token's last
# use is news for a person, not a counter on the hot path.
LAST_USE_EVERY_SECONDS = 300.0
# How long a process trusts a live token it read, while it keeps seeing the revocation
# count (every REVOCATION_CHECK_SECONDS): a revocation makes it forget them all, so
# this bounds nothing a person waits for. With CACHE_SECONDS instead, each of a class
# of 600 phones, posting every 10-20 s, cost a token lookup per post, and a note of
# its use every minute: a third of the embedded database's time (bench/soak.py).
TRUSTED_SECONDS = 600.0


class TokenFinder(Protocol):
    """Finds what an issued token proves: its live document, or None."""

    async def find(self, token: str) -> dict[str, Any] | None: ...


def revocations() -> Any:
    """The collection of the one document that counts revocations (its `generation`)."""
    return AccessToken.get_pymongo_collection().database["token_revocations"]


async def revoke_token(token_id: str | None) -> None:
    """Revokes an issued token (revoking again keeps the first time); None does nothing.
    Counted after the token is marked, so a process that sees the new count reads the
    token as revoked."""
    if not token_id:
        return
    await AccessToken.get_pymongo_collection().update_one(
        {"token_id": token_id, "revoked_at": None}, {"$set": {"revoked_at": stored_now()}}
    )
    await revocations().update_one(
        {"_id": REVOCATIONS_ID}, {"$inc": {"generation": 1}}, upsert=True
    )


class Remembered:
    """Answers kept for `seconds` by key, misses (None) too but for at most
    `miss_seconds` (so a flood of wrong tokens costs one lookup per token and interval,
    and a token just issued works within that); at most about `most` keys are kept."""

    def __init__(
        self, seconds: float, most: int = 10_000, miss_seconds: float | None = None
    ) -> None:
        self.seconds = seconds
        self.miss_seconds = seconds if miss_seconds is None else miss_seconds
        self.most = most
        self._answers: dict[str, tuple[float, Any]] = {}

    async def get(
        self, key: str, look_up: Callable[[], Awaitable[Any]], seconds: float | None = None
    ) -> Any:
        """The answer for `key`, read again when the one kept is older than `seconds`
        (by default the instance's)."""
        now = time.monotonic()
        kept = self._answers.get(key)
        if kept is not None:
            read_at, answer = kept
            trusted = self.seconds if seconds is None else seconds
            if now - read_at < (trusted if answer is not None else self.miss_seconds):
                return answer
        answer = await look_up()
        if len(self._answers) >= self.most:
            self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self.seconds}
        self._answers[key] = (now, answer)
        return answer

    def forget(self) -> None:
        self._answers.clear()


class IssuedTokens:
    """What issued tokens prove, read from MongoDB by digest, and whether a study is
    closed, each kept for a few seconds."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self._cache_seconds = cache_seconds
        self._tokens = Remembered(TRUSTED_SECONDS, miss_seconds=cache_seconds)
        self._closed = Remembered(cache_seconds)
        self._generation: int | None = None
        self._next_revocation_check = 0.0
        # When the revocation count was last read: tokens are trusted long only while
        # it is read (a database that cannot be asked falls back to CACHE_SECONDS).
        self._revocations_read_at = -REVOCATION_BOUND_SECONDS
        self._last_noted: dict[str, float] = {}
        self._notes: set[asyncio.Task[None]] = set()

    async def find(self, token: str) -> dict[str, Any] | None:
        """The live (not revoked) document of an issued token, or None."""
        await self._follow_revocations()
        digest = token_digest(token)
        following = time.monotonic() - self._revocations_read_at <= REVOCATION_BOUND_SECONDS
        document: dict[str, Any] | None = await self._tokens.get(
            digest,
            lambda: AccessToken.get_pymongo_collection().find_one(
                {"token_sha256": digest, "revoked_at": None},
                {"token_id": 1, "kind": 1, "study_ids": 1, "user_id": 1},
            ),
            TRUSTED_SECONDS if following else self._cache_seconds,
        )
        if document is not None:
            self._note_use(document["token_id"], time.monotonic())
        return document

    async def _follow_revocations(self) -> None:
        """Forgets every token read before a revocation, checking at most every
        REVOCATION_CHECK_SECONDS."""
        now = time.monotonic()
        if now < self._next_revocation_check:
            return
        self._next_revocation_check = now + REVOCATION_CHECK_SECONDS
        try:
            found = await revocations().find_one({"_id": REVOCATIONS_ID})
        except PyMongoError:
            # Tokens are trusted for CACHE_SECONDS only until it is read again. The request's next
            # database step reports the database down at once, not after a second wait.
            logger.warning("could not check for revoked tokens")
            fail_fast_from_now()
            return
        generation = found["generation"] if found else 0
        if generation != self._generation:
            if self._generation is not None:
                self._tokens.forget()
            self._generation = generation
        self._revocations_read_at = now

    async def study_is_closed(self, study_id: str) -> bool:
        async def look_up() -> bool:
            study = await Study.get_pymongo_collection().find_one(
                {"study_id": study_id}, {"status": 1}
            )
            return study is None or bool(study["status"] == StudyStatus.CLOSED)

        closed: bool = await self._closed.get(study_id, look_up)
        return closed

    def _note_use(self, token_id: str, now: float) -> None:
        if self._last_noted.get(token_id, 0.0) + LAST_USE_EVERY_SECONDS > now:
            return
        self._last_noted[token_id] = now
        task = asyncio.create_task(self._write_last_use(token_id))
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    @staticmethod
    async def _write_last_use(token_id: str) -> None:
        try:
            await AccessToken.get_pymongo_collection().update_one(
                {"token_id": token_id}, {"$set": {"last_used_at": stored_now()}}
            )
        except PyMongoError:
            logger.warning("could not note a token's last use", extra={"token_id": token_id})
