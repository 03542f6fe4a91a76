"""Beanie documents of the admin service, in the original's collections.

Passwords are stored only as Argon2 hashes and provider keys only encrypted
(`encrypted_keys`: name -> Fernet token); tokens handed to users only as SHA-256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo
from beanie import Document
from pydantic import ConfigDict
from pymongo import IndexModel

from services.admin.limits import RateWindow


class UserCredential(Document):
    user_id: str
    username: str
    password_hash: str
    created_at: datetime
    failed_sign_ins: int = 0
    locked_until: datetime | None = None

    class Settings:
        name = "UserCredentials"
        indexes = [
            IndexModel([("username", pymongo.ASCENDING)], name="username_unique", unique=True),
            IndexModel([("user_id", pymongo.ASCENDING)], name="user_id_unique", unique=True),
        ]


class UserConfig(Document):
    user_id: str
    encrypted_keys: dict[str, str] = {}
    # Settings that are not secret (timezone, ...), from the default user config.
    settings: dict[str, str | None] = {}

    class Settings:
        name = "UserConfigs"
        indexes = [IndexModel([("user_id", pymongo.ASCENDING)], name="user_id_unique", unique=True)]


class CharacterConfig(Document):
    """A character: the original's fields, kept as they are (see schemas.Character)."""

    model_config = ConfigDict(extra="allow")

    user_id: str
    character_id: str
    character_name: str
    read_only: bool = False
    # The original's spelling, which its clients read.
    create_datatime: str

    class Settings:
        name = "CharacterConfigs"
        indexes = [
            IndexModel(
                [("user_id", pymongo.ASCENDING), ("character_id", pymongo.ASCENDING)],
                name="user_character_unique",
                unique=True,
            ),
            IndexModel([("user_id", pymongo.ASCENDING), ("_id", 1)], name="user_creation"),
        ]


class UserSession(Document):
    """A token authenticate_user handed out, by its SHA-256."""

    token_sha256: str
    user_id: str
    expires_at: datetime

    class Settings:
        name = "UserSessions"
        indexes = [
            IndexModel([("token_sha256", pymongo.ASCENDING)], name="token_unique", unique=True),
            IndexModel([("user_id", pymongo.ASCENDING)], name="user"),
            # MongoDB removes expired sessions by itself.
            IndexModel([("expires_at", pymongo.ASCENDING)], name="expiry", expireAfterSeconds=0),
        ]


class Participant(Document):
    """A research participant enrolled in a study (not a companion-app user).

    The enrolment code is kept only as an HMAC under the server's secret key, and
    `token_id` names the participant's current token (services.common.research.tokens)."""

    study_id: str
    user_id: str
    status: str = "active"
    created_at: datetime
    code_digest: str | None = None
    code_expires_at: datetime | None = None
    code_used_at: datetime | None = None
    token_id: str | None = None
    withdrawn_at: datetime | None = None

    class Settings:
        name = "participants"
        indexes = [
            IndexModel(
                [("study_id", pymongo.ASCENDING), ("user_id", pymongo.ASCENDING)],
                name="study_participant_unique",
                unique=True,
            ),
            IndexModel(
                [("study_id", pymongo.ASCENDING), ("code_digest", pymongo.ASCENDING)],
                name="study_code",
            ),
        ]


class SilenceNotice(Document):
    """A study's notice of one local day: who stopped reporting since the day before,
    and its delivery to the study's webhook (services.admin.research.notices)."""

    study_id: str
    day: str  # the study's local day it was made on
    stopped: list[str]  # everyone who had stopped reporting then
    newly_stopped: list[str]  # those of them the notice is about
    payload: dict[str, Any]
    status: str  # "pending", "delivered", "failed", "nothing" (nobody newly stopped)
    attempts: list[dict[str, Any]] = []  # each: at, outcome, next delay
    next_attempt_at: datetime | None = None
    claimed_until: datetime | None = None
    created_at: datetime

    class Settings:
        name = "silence_notices"
        indexes = [
            IndexModel([("study_id", 1), ("day", 1)], name="study_day_unique", unique=True),
            IndexModel([("status", 1), ("next_attempt_at", 1)], name="due"),
        ]


class AuditBlock(Document):
    """Entries of the audit trail (services.common.research.audit) stored together, as one
    batch from the gateway arrived: one insert per batch, not per entry. Appended,
    never changed. `id` is the `seq` of its first entry, so two workers that chain
    a batch after the same entry collide on it."""

    id: int  # type: ignore[assignment]  # our own key type in place of Beanie's ObjectId
    batch_id: str  # the gateway's id of the batch (a batch sent again is stored once)
    last_seq: int
    entries: list[dict[str, Any]]
    # What the listing filters on most, to find the blocks holding matching entries.
    credential_ids: list[str]
    participants: list[str]

    class Settings:
        name = "audit_trail"
        indexes = [
            IndexModel([("batch_id", 1)], name="batch_unique", unique=True),
            # Where the chain ends (services.admin.research.trail.ChainEnd).
            IndexModel([("last_seq", 1)], name="chain_end"),
            IndexModel([("credential_ids", 1), ("_id", 1)], name="credential_block"),
            IndexModel([("participants", 1), ("_id", 1)], name="participant_block"),
        ]


class DeletionJob(Document):
    """The deletion of a participant's data across the services (services.admin.
    deletions): what each step found before deleting it, which steps are done, and
    the signed receipt once all are. A deletion cut short is continued from here."""

    receipt_id: str
    study_id: str
    user_id: str | None  # None: the whole study
    requested_by: dict[str, str]
    requested_at: datetime
    state: str  # "deleting" or "done"
    planned: dict[str, Any] = {}
    done_steps: list[str] = []
    completed_at: datetime | None = None
    receipt: dict[str, Any] | None = None

    class Settings:
        name = "deletion_receipts"
        indexes = [
            IndexModel([("receipt_id", 1)], name="receipt_id_unique", unique=True),
            IndexModel([("study_id", 1), ("user_id", 1), ("state", 1)], name="participant"),
        ]


DOCUMENTS: list[type[Document]] = [
    AuditBlock,
    DeletionJob,
    UserCredential,
    UserConfig,
    CharacterConfig,
    UserSession,
    RateWindow,
    Participant,
    SilenceNotice,
]
