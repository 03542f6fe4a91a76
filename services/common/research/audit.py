"""The audit trail's entries: who read which participant data or changed something,
and the hash chain that makes a removed or edited entry detectable.

The gateway writes the entries (every personal-data route passes through it) and
the admin service keeps them (the gateway has no database). Each stored entry
carries `seq` (1, 2, 3, ...), the hash of the entry before it (`prev_hash`) and its
own `hash`: SHA-256 of the previous hash and of the entry's fields in a canonical
form. Editing an entry changes its hash; removing one leaves a gap in `seq` and
a `prev_hash` that names no entry; either is found by `verify`. Entries are stored in
blocks whose other fields (the indexes searches use) are derived from the entries, so
`verify` derives them again: an edited index or an added field is found too.

An entry is made storable when it is made (`AuditEntry.__post_init__`): whatever a
request put in it, no entry can be refused by the database and hold up the others.

Written by the gateway, stored by the admin service.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.common.web.schemas import WireStruct

# The hash before the first entry.
GENESIS = "0" * 64


class AuditEntry(WireStruct):
    """One read of participant data, or one change, as the gateway saw it."""

    time: datetime
    # The credential: an issued token's id and name, or the environment's token of a
    # role ("env:viewer"). Never the secret itself.
    credential_id: str
    credential_name: str
    role: str
    action: str  # "GET /api/sentiments"
    status: int
    bytes: int
    request_id: str
    records: int | None = None
    study_id: str | None = None
    participants: list[str] = []
    # The query's parameters as sent (what was asked for), secrets never among them.
    filters: dict[str, str] = {}
    client: str | None = None

    def __post_init__(self) -> None:
        # A document's keys may not hold NUL, and `.` and a leading `$` mean paths and
        # operators to MongoDB: filter names (a client's query) are escaped, reversibly.
        if any(_UNSAFE_KEY.search(name) for name in self.filters):
            self.filters = {storable_key(name): value for name, value in self.filters.items()}


_UNSAFE_KEY = re.compile(r"[\x00.]|^\$")


def storable_key(name: str) -> str:
    """A filter name as a document may hold it: NUL, `.` and a leading `$` written as
    their percent escapes (`a.b` is stored as `a%2Eb`). Applied again it changes
    nothing, so an entry decoded, journaled or sent twice keeps its names."""
    escaped = name.replace("\x00", "%00").replace(".", "%2E")
    return "%24" + escaped[1:] if escaped.startswith("$") else escaped


class AuditBatch(WireStruct):
    """Entries as the gateway sends them; a batch sent again keeps its id."""

    batch_id: str
    entries: list[AuditEntry]


class StoredAuditEntry(AuditEntry, kw_only=True):
    seq: int
    prev_hash: str
    hash: str


FIELDS = tuple(AuditEntry.__struct_fields__)


def instant(value: datetime) -> str:
    """A time as the chain hashes it: UTC to the millisecond, as MongoDB keeps it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of an entry whose `fields` (AuditEntry's) follow `prev_hash`."""
    canonical = {name: fields.get(name) for name in FIELDS}
    canonical["time"] = instant(fields["time"])
    canonical["participants"] = list(canonical["participants"] or [])
    canonical["filters"] = dict(canonical["filters"] or {})
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode()).hexdigest()


def chained(entries: list[AuditEntry], last_seq: int, last_hash: str) -> list[dict[str, Any]]:
    """`entries` as stored documents following the entry `last_seq` (0: none), whose
    hash is `last_hash`."""
    documents = []
    for entry in entries:
        fields = msgspec.structs.asdict(entry)
        fields["time"] = datetime.fromisoformat(instant(entry.time))
        last_seq += 1
        document = {**fields, "seq": last_seq, "prev_hash": last_hash}
        last_hash = document["hash"] = entry_hash(last_hash, fields)
        documents.append(document)
    return documents


class ChainCheck(WireStruct, omit_defaults=True):
    """What `verify` found: how many entries it checked, and the first broken one."""

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None
    # The hash of the newest entry checked: kept elsewhere, it also shows later that
    # no entry was removed from the end and the chain was not rewritten whole.
    last_hash: str | None = None


STORED_FIELDS = frozenset({*FIELDS, "seq", "prev_hash", "hash"})
BLOCK_FIELDS = frozenset(
    {"_id", "batch_id", "last_seq", "entries", "credential_ids", "participants"}
)


def block_of(batch_id: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The stored block of chained `documents`: its id is its first entry's `seq`, and
    its indexes (credentials, participants) are derived from its entries."""
    return {
        "_id": documents[0]["seq"],
        "batch_id": batch_id,
        "last_seq": documents[-1]["seq"],
        "entries": documents,
        **_block_indexes(documents),
    }


def _block_indexes(documents: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {
        "credential_ids": sorted({entry["credential_id"] for entry in documents}),
        "participants": sorted({p for entry in documents for p in entry["participants"]}),
    }


def _block_problem(block: dict[str, Any]) -> str | None:
    """What is wrong with a block apart from its entries' hashes, or None."""
    entries = block.get("entries") or []
    added = set(block) - BLOCK_FIELDS
    if added:
        return f"has fields no entry recorded: {', '.join(sorted(added))}"
    if not entries:
        return "holds no entry"
    for entry in entries:
        extra = set(entry) - STORED_FIELDS
        if extra:
            return f"entry {entry.get('seq')} has fields it was not recorded with: " + ", ".join(
                sorted(extra)
            )
    if block.get("_id") != entries[0].get("seq") or block.get("last_seq") != entries[-1].get("seq"):
        return "does not span the entries it holds"
    try:
        derived = _block_indexes(entries)
    except (KeyError, TypeError):
        return "holds an entry without its credential or participants"
    for name, values in derived.items():
        if block.get(name) != values:
            return f"its {name} index does not match its entries"
    return None


async def verify(blocks: AsyncIterable[dict[str, Any]]) -> ChainCheck:
    """Checks stored blocks in order: each block's indexes and fields as derived from its
    entries, and the entries in `seq` order: consecutive numbers, each `prev_hash` the
    hash of the entry before, each `hash` that of its own fields."""
    expected_seq, prev_hash, count = 1, GENESIS, 0
    async for block in blocks:
        # The entries first: a removed or edited entry is named as such.
        for document in block.get("entries") or []:
            check = _entry_problem(document, expected_seq, prev_hash, count)
            if check is not None:
                return check
            prev_hash, expected_seq, count = document["hash"], expected_seq + 1, count + 1
        problem = _block_problem(block)
        if problem is not None:
            first = block.get("_id") if isinstance(block.get("_id"), int) else expected_seq
            return ChainCheck(
                ok=False, entries=count, first_broken_seq=first, reason=f"block {first} {problem}"
            )
    return ChainCheck(ok=True, entries=count, last_hash=prev_hash if count else None)


def _entry_problem(
    document: dict[str, Any], expected_seq: int, prev_hash: str, count: int
) -> ChainCheck | None:
    seq = document.get("seq")
    if seq != expected_seq:
        return ChainCheck(
            ok=False,
            entries=count,
            first_broken_seq=expected_seq,
            reason=f"entry {expected_seq} is missing (the next stored entry is {seq})",
        )
    if document.get("prev_hash") != prev_hash:
        return ChainCheck(
            ok=False,
            entries=count,
            first_broken_seq=seq,
            reason=f"entry {seq} does not follow the hash of entry {seq - 1}",
        )
    if entry_hash(prev_hash, document) != document.get("hash"):
        return ChainCheck(
            ok=False,
            entries=count,
            first_broken_seq=seq,
            reason=f"entry {seq} was changed after it was recorded",
        )
    return None
