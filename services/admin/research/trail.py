"""The audit trail's blocks in the database: appending a batch after the newest stored
entry, and reading blocks and entries in order.

Each batch is stored as one block (one insert, whatever its size: a recorded read
costs the database a fraction of a write). Appending is safe with any number of
admin workers: a batch is chained after the newest stored entry, and a block's id is
the `seq` of its first entry, so a worker that lost a race to another one's batch is
refused, reads the new end of the chain and chains its batch again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.admin.models import AuditBlock
from services.common.research.audit import GENESIS, AuditEntry, block_of, chained
from services.common.research.pseudonyms import PseudonymEntry
from services.common.web.errors import ServiceUnavailable

# Races lost to other workers before a batch gives up (each loss means another batch
# was stored, so this is only reached under a flood).
APPEND_ATTEMPTS = 50


async def with_real_ids(entries: list[AuditEntry]) -> None:
    """Adds to each entry the real participant behind a pseudonym it names (a viewer of a
    protected study reads by pseudonym), so the trail is searched by the real id."""
    named = sorted({p for entry in entries for p in entry.participants})
    if not named:
        return
    behind: dict[str, list[tuple[str, str]]] = {}
    found = PseudonymEntry.get_pymongo_collection().find(
        {"pseudonym": {"$in": named}}, {"_id": 0, "pseudonym": 1, "user_id": 1, "study_id": 1}
    )
    async for row in found:
        behind.setdefault(row["pseudonym"], []).append((row["study_id"], row["user_id"]))
    for entry in entries:
        real = [
            user_id
            for name in entry.participants
            for study_id, user_id in behind.get(name, ())
            if entry.study_id in (None, study_id)
        ]
        if real:
            entry.participants = list(dict.fromkeys([*entry.participants, *real]))


class ChainEnd:
    """Finds the newest stored entry. The embedded database answers a sort that has no
    range by reading the whole collection (40 ms at 1,500 blocks, and growing with the
    trail), so the end is looked for in the `last_seq` index from the end this process
    last saw: a few index entries, however long the trail (bench/audit_append.py)."""

    def __init__(self) -> None:
        self.seen_seq = 0

    async def find(self, collection: Any) -> tuple[int, str]:
        """The `seq` and hash of the newest stored entry (0 and GENESIS: none)."""
        # From 0 as well when nothing is found from the seen end: a trail restored
        # from an older copy is shorter than what this process saw.
        for low in dict.fromkeys((self.seen_seq, 0)):
            last = await collection.find_one(
                {"last_seq": {"$gte": low}},
                {"last_seq": 1, "entries": {"$slice": -1}},
                sort=[("last_seq", -1)],
            )
            if last is not None:
                self.seen_seq = last["last_seq"]
                return last["last_seq"], last["entries"][-1]["hash"]
        return 0, GENESIS


CHAIN_END = ChainEnd()


async def append(batch_id: str, entries: list[AuditEntry], end: ChainEnd = CHAIN_END) -> None:
    """Chains `entries` after the newest stored entry and stores them as one block;
    a batch already stored (sent again after an answer was lost) is not stored twice."""
    collection = AuditBlock.get_pymongo_collection()
    await with_real_ids(entries)
    for _ in range(APPEND_ATTEMPTS):
        if await collection.find_one({"batch_id": batch_id}, {"_id": 1}) is not None:
            return
        block = block_of(batch_id, chained(entries, *await end.find(collection)))
        try:
            await collection.insert_one(block)
        except DuplicateKeyError:  # another batch came first (or this one): look again
            continue
        end.seen_seq = block["last_seq"]
        return
    raise ServiceUnavailable("The audit trail is busy; send the entries again")


def blocks(query: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
    """Stored blocks in order (those matching `query`)."""
    return AuditBlock.get_pymongo_collection().find(query or {}).sort("_id", 1)


async def in_order(query: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
    """Stored entries in `seq` order (of the blocks matching `query`)."""
    async for block in blocks(query):
        for entry in block["entries"]:
            yield entry
