"""The companion app's accounts: passwords (Argon2id, argon2-cffi), sign-in sessions
(tokens stored only as their SHA-256), provider keys encrypted with Fernet (AES-128-CBC
with HMAC-SHA256, from `cryptography`) under keys derived from EMOGO_SECRET_KEY, and
the defaults a new user starts from.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.admin.companion.schemas import (
    CharacterTemplate,
)
from services.admin.models import UserCredential, UserSession
from services.admin.settings import SHIPPED_DEFAULTS, AdminSettings
from services.common.web.errors import (
    BadRequest,
    TooManyRequests,
)
from services.common.web.schemas import utc_now

SHIPPED_MOTION_KEYWORDS = SHIPPED_DEFAULTS / "motion_keywords.json"
# OWASP's Argon2id setting for interactive sign-in: 19 MiB, 2 passes, 1 lane.
PASSWORDS = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the username is unknown, so both answers take as long.
_DECOY_HASH = PASSWORDS.hash(secrets.token_urlsafe(16))
READ_ONLY = "Character is read-only and cannot be modified"


# --- provider keys ------------------------------------------------------------------


class KeyVault:
    """Encrypts provider keys. Each secret in EMOGO_SECRET_KEY becomes a Fernet key
    through HKDF; the first encrypts, all decrypt, so keys can be rotated."""

    def __init__(self, secret_keys: Iterable[str]) -> None:
        self._fernet = MultiFernet([Fernet(self._derive(secret)) for secret in secret_keys])

    @staticmethod
    def _derive(secret: str) -> bytes:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"emogo provider keys"
        ).derive(secret.encode())
        return base64.urlsafe_b64encode(key)

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None


def mask(value: str | None) -> str:
    """What a response may show of a key: its last four characters, for long ones."""
    if not value:
        return ""
    return f"****{value[-4:]}" if len(value) >= 16 else "****"


# --- defaults -----------------------------------------------------------------------


class Defaults:
    """The default user config and template characters, read and checked at start-up."""

    def __init__(self, folder: Path) -> None:
        config_file = folder / "user_config.json"
        character_files = sorted((folder / "characters").glob("*.json"))
        if not config_file.is_file() or not character_files:
            raise RuntimeError(
                f"{folder} must hold user_config.json and characters/*.json "
                "(EMOGO_ADMIN_DEFAULTS_DIR)"
            )
        self.user_config: dict[str, str | None] = json.loads(config_file.read_text("utf-8"))
        # Words the companion app's orchestrator turns into an avatar's motions.
        keywords_file = folder / "motion_keywords.json"
        if not keywords_file.is_file():
            keywords_file = SHIPPED_MOTION_KEYWORDS
        self.motion_keywords: list[str] = msgspec.json.decode(
            keywords_file.read_bytes(), type=list[str]
        )
        self.characters: list[CharacterTemplate] = []
        for path in character_files:
            try:
                self.characters.append(
                    msgspec.json.decode(path.read_bytes(), type=CharacterTemplate)
                )
            except (msgspec.ValidationError, msgspec.DecodeError) as problem:
                raise RuntimeError(f"default character {path}: {problem}") from None


def creation_time(now: datetime) -> str:
    """The original's `create_datatime` format: `YYYY-MM-DD HH:MM:SS,mmm`."""
    return now.strftime("%Y-%m-%d %H:%M:%S,") + f"{now.microsecond // 1000:03d}"


# --- sign-in ------------------------------------------------------------------------


async def _hash(password: str) -> str:
    return await asyncio.to_thread(PASSWORDS.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return PASSWORDS.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


class UsernameTaken(BadRequest):
    """Registration with a user name that is already in use."""


class SignInRejected(BadRequest):
    """An unknown user name or a wrong password; the two are not told apart."""


async def register(username: str, password: str) -> str:
    if await UserCredential.find_one(UserCredential.username == username):
        raise UsernameTaken(f"Username {username} already exists.")
    user_id = str(uuid.uuid4())
    credential = UserCredential(
        user_id=user_id,
        username=username,
        password_hash=await _hash(password),
        created_at=utc_now(),
    )
    try:
        await credential.insert()
    except DuplicateKeyError:
        raise UsernameTaken(f"Username {username} already exists.") from None
    return user_id


# One message for an unknown user name and a wrong password, so that signing in does
# not tell a stranger which user names exist (the companion app's words).
SIGN_IN_FAILED = "Incorrect username or password."


async def check_password(settings: AdminSettings, username: str, password: str) -> UserCredential:
    """The credential when the password matches. Failures in a row lock the username
    for a while that doubles with each further failure (429 with Retry-After)."""
    credential = await UserCredential.find_one(UserCredential.username == username)
    if credential is None:
        await _verify(_DECOY_HASH, password)
        raise SignInRejected(SIGN_IN_FAILED)
    now = utc_now()
    locked_until = credential.locked_until
    if locked_until is not None and locked_until.replace(tzinfo=UTC) > now:
        wait = int((locked_until.replace(tzinfo=UTC) - now).total_seconds()) + 1
        raise TooManyRequests(
            "Too many failed sign-ins for this username; retry later",
            headers={"Retry-After": str(wait)},
        )
    if not await _verify(credential.password_hash, password):
        await _count_failure(settings, credential.id, now)
        raise SignInRejected(SIGN_IN_FAILED)
    if credential.failed_sign_ins or credential.locked_until:
        await credential.set({"failed_sign_ins": 0, "locked_until": None})
    return credential


async def _count_failure(settings: AdminSettings, credential_id: Any, now: datetime) -> None:
    """One more failure in a row, counted atomically in the database, so failures
    sent to different workers at once each count and lock the same way."""
    credentials = UserCredential.get_pymongo_collection()
    counted = await credentials.find_one_and_update(
        {"_id": credential_id},
        {"$inc": {"failed_sign_ins": 1}},
        projection={"failed_sign_ins": 1},
        return_document=ReturnDocument.AFTER,
    )
    failures = counted["failed_sign_ins"] if counted else 0
    if failures >= settings.sign_in_failures_allowed:
        doublings = min(failures - settings.sign_in_failures_allowed, 12)
        until = now + timedelta(seconds=settings.sign_in_lock_seconds * 2**doublings)
        await credentials.update_one({"_id": credential_id}, {"$max": {"locked_until": until}})


async def start_session(settings: AdminSettings, user_id: str) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)
    expires_at = utc_now() + timedelta(seconds=settings.user_token_seconds)
    await UserSession(
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        user_id=user_id,
        expires_at=expires_at,
    ).insert()
    return token, expires_at


async def session_user(token: str) -> str | None:
    """The user a token from authenticate_user stands for, while it is valid."""
    session = await UserSession.find_one(
        UserSession.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    )
    if session is None or session.expires_at.replace(tzinfo=UTC) <= utc_now():
        return None
    return session.user_id


async def change_password(credential: UserCredential, new_password: str) -> None:
    await credential.set({"password_hash": await _hash(new_password)})
    # Whoever held a token under the old password holds nothing now.
    await UserSession.find(UserSession.user_id == credential.user_id).delete()
