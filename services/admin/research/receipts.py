"""Deletion receipts: what a deletion removed, when and for whom, signed with the
server's secret so that the server can later confirm a receipt it is shown is one it
made, unchanged (services.admin.research.deletions makes them).

The signature is HMAC-SHA256 of the receipt's other fields in canonical JSON (sorted
keys, no spaces), with a key derived from the first EMOGO_SECRET_KEY; every key in
use is tried when checking, so a receipt outlives a key rotation while the old key
is still listed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from services.common.web.schemas import WireStruct

SIGNATURE_ALGORITHM = "HMAC-SHA256"


class DeletedVlogFile(WireStruct):
    id: str
    sha256: str | None
    bytes: int | None


class DeletedData(WireStruct):
    sentiments: int
    gps_fixes: int
    vlogs: int
    vlog_files: list[DeletedVlogFile]
    # What else went with the records.
    also: list[str]


class Requester(WireStruct):
    credential_id: str
    role: str


class DeletionReceipt(WireStruct):
    """What a deletion removed, when and for whom, signed with the server's secret
    (HMAC-SHA256 over the receipt's other fields in canonical JSON)."""

    receipt_id: str
    study_id: str
    user_id: str | None  # None: the whole study's data
    requested_by: Requester
    # UTC, to the millisecond, as signed.
    requested_at: str
    completed_at: str
    deleted: DeletedData
    signature_algorithm: str
    signature: str


class ReceiptCheck(WireStruct, omit_defaults=True):
    valid: bool
    reason: str | None = None


def _signing_key(secret: str) -> bytes:
    """A key of its own for receipts, so the encryption key is never used to sign."""
    return hmac.new(secret.encode(), b"emogo deletion receipts", hashlib.sha256).digest()


def _canonical(receipt: dict[str, Any]) -> bytes:
    fields = {k: v for k, v in receipt.items() if k not in ("signature", "signature_algorithm")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign(receipt: dict[str, Any], secret: str) -> str:
    return hmac.new(_signing_key(secret), _canonical(receipt), hashlib.sha256).hexdigest()


def check(receipt: dict[str, Any], secrets_in_use: tuple[str, ...]) -> ReceiptCheck:
    """Whether `receipt` is one this server signed, with any of its keys (rotation)."""
    if receipt.get("signature_algorithm") != SIGNATURE_ALGORITHM:
        return ReceiptCheck(valid=False, reason="not signed with HMAC-SHA256")
    given = str(receipt.get("signature", ""))
    for secret in secrets_in_use:
        if hmac.compare_digest(sign(receipt, secret), given):
            return ReceiptCheck(valid=True)
    return ReceiptCheck(valid=False, reason="the signature does not match its contents")
