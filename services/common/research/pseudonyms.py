"""Pseudonyms: what a participant's id, and a phone's opaque id of a record, read as to
viewers of a pseudonymous study, and the pseudonyms handed out so far.

Owned by no service alone: every service that answers viewers makes pseudonyms and
writes down those it hands out (services.common.research.privacy); every service looks them up
when a viewer filters by one; the admin service reads them for the audit trail (a read
by pseudonym is found by the real id) and removes a withdrawn participant's.

A pseudonym is a keyed hash (HMAC-SHA256 with the study's own random key) of the
participant's id: stable for the life of the study, different in every study, and not
reversible without the key, which never leaves the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pymongo
from beanie import Document
from pymongo import IndexModel

PSEUDONYM_PREFIX = "anon-"
# 12 base32 characters: 60 bits, so two participants of a study do not share one.
PSEUDONYM_CHARACTERS = 12
DIGEST_PREFIX = "cid-"


def new_pseudonym_key() -> str:
    return secrets.token_hex(32)


def pseudonym(key: str, user_id: str) -> str:
    digest = hmac.new(bytes.fromhex(key), user_id.encode(), hashlib.sha256).digest()
    return PSEUDONYM_PREFIX + base64.b32encode(digest).decode()[:PSEUDONYM_CHARACTERS].lower()


def digest(key: str, field_name: str, value: str) -> str:
    """An opaque phone id as a viewer sees it: keyed by the study's key, so stable
    (a resent record keeps it) and not reversible, and different in every study."""
    message = field_name.encode() + b"\x00" + value.encode()
    mac = hmac.new(bytes.fromhex(key), message, hashlib.sha256).digest()
    return DIGEST_PREFIX + base64.b32encode(mac).decode()[:20].lower()


class PseudonymEntry(Document):
    """A pseudonym handed out to a viewer, so that it can be looked up when it comes back."""

    study_id: str
    pseudonym: str
    user_id: str

    class Settings:
        name = "pseudonyms"
        indexes = [
            IndexModel(
                [("pseudonym", pymongo.ASCENDING), ("study_id", pymongo.ASCENDING)],
                name="pseudonym_study_unique",
                unique=True,
            ),
            IndexModel(
                [("study_id", pymongo.ASCENDING), ("user_id", pymongo.ASCENDING)],
                name="study_user",
            ),
        ]
