"""Sending the audit trail's entries to the admin service, which chains and stores them
(services.admin.research.audit), without losing one and without one holding up the others.

`AuditRecorder` journals each entry on local disk, synced, as it is recorded
(services.gateway.audit.journal), and sends the journaled entries in batches every
FLUSH_SECONDS: the read being recorded waits for no database, and the database takes
one insert a second. A batch that could not be sent is sent again under the same id
(the admin service stores a batch id once); a batch refused is split in halves down to
the one entry refused. A killed gateway's journal is sent by the next one to start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from services.common.research.audit import AuditBatch, AuditEntry
from services.common.runtime.periodic import Periodic
from services.gateway.audit.journal import AuditJournal, Segment

logger = logging.getLogger("emogo.audit")

FLUSH_SECONDS = 1.0
MOST_PER_BATCH = 500
SHUTDOWN_SECONDS = 10.0


class Refused(Exception):
    """The admin service answered that it will not store a batch as sent (a 4xx other
    than 408 and 429, or a 500): sending it again unchanged would fail again."""


class AuditRecorder:
    """Entries journaled on disk (services.gateway.audit.journal) as they are recorded and
    sent to the admin service in batches.

    A batch that could not be sent (the admin service down or busy) is sent again under
    the same id, so the admin service stores it once even when the first attempt did
    arrive. A batch refused is split in halves, each sent on its own, down to the one
    entry refused, which is stored without its client-supplied filters or, refused
    even so, logged and left out: one bad entry never holds up the others."""

    def __init__(
        self, send_batch: Callable[[str, list[AuditEntry]], Any], journal: AuditJournal
    ) -> None:
        self._send_batch = send_batch
        self.journal = journal
        # Sealed segments not stored yet, oldest first: a killed process's, then this one's.
        self._sealed: list[Segment] = []
        self._sending = asyncio.Lock()
        self._periodic = Periodic("audit flush", self.flush, FLUSH_SECONDS, logger)
        self._failing = False

    def record(self, entry: AuditEntry) -> None:
        """Journals `entry`, synced to disk, before this returns."""
        try:
            self.journal.append(entry)
        except OSError as problem:
            # Kept in memory and sent as usual; only a kill before then would lose it.
            logger.error(
                "the audit journal could not be written",
                extra={"error": type(problem).__name__, "request_id": entry.request_id},
            )
            self.journal.current.entries.append(entry)

    def left(self) -> int:
        return len(self.journal.current.entries) + sum(len(s.entries) for s in self._sealed)

    async def flush(self) -> None:
        async with self._sending:
            while True:
                if not self._sealed:
                    sealed = self.journal.seal()
                    if sealed is None:
                        return
                    self._sealed.append(sealed)
                segment = self._sealed[0]
                try:
                    for start in range(0, len(segment.entries), MOST_PER_BATCH):
                        batch = segment.entries[start : start + MOST_PER_BATCH]
                        await self._store(f"{segment.batch_id}-{start}", batch)
                except Exception as problem:  # kept, and sent again at the next flush
                    if not self._failing:
                        logger.warning(
                            "audit entries could not be stored yet; they are kept and sent again",
                            extra={"waiting": self.left(), "error": type(problem).__name__},
                        )
                    self._failing = True
                    return
                if self._failing:
                    logger.info("audit entries are being stored again")
                self._failing = False
                self.journal.done(self._sealed.pop(0))

    async def _store(self, batch_id: str, entries: list[AuditEntry]) -> None:
        """Sends a batch; a refused one in halves, each under an id derived from the
        batch's, so a retry after a later failure stores no half twice."""
        try:
            await self._send_batch(batch_id, entries)
            return
        except Refused as refusal:
            if len(entries) > 1:
                half = len(entries) // 2
                await self._store(f"{batch_id}.a", entries[:half])
                await self._store(f"{batch_id}.b", entries[half:])
                return
            problem = str(refusal)
        [entry] = entries
        if entry.filters or batch_id.endswith(".plain"):
            logger.error(
                "an audit entry was refused; it is stored without its filters",
                extra={"request_id": entry.request_id, "error": problem[:200]},
            )
            plain = msgspec.structs.replace(entry, filters={"refused": "filters left out"})
            if not batch_id.endswith(".plain"):
                try:
                    await self._send_batch(f"{batch_id}.plain", [plain])
                    return
                except Refused:
                    pass
        logger.error(
            "an audit entry was refused and left out",
            extra={"request_id": entry.request_id, "action": entry.action[:200]},
        )

    def start(self) -> None:
        self._sealed.extend(self.journal.orphans())
        if self._sealed:
            logger.info(
                "audit entries journaled by a stopped gateway are sent again",
                extra={"waiting": self.left()},
            )
        self._periodic.start()

    async def stop(self) -> None:
        # A batch being sent is let finish, not cut off (and then sent twice).
        async with self._sending:
            await self._periodic.stop()
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_SECONDS
        while self.left() and asyncio.get_running_loop().time() < deadline:
            await self.flush()
            if self.left():
                await asyncio.sleep(0.2)
        if self.left():
            logger.error(
                "audit entries not stored at shutdown; the journal keeps them for the next start",
                extra={"waiting": self.left()},
            )
        self.journal.close()


def admin_sender(
    session: aiohttp.ClientSession, send: Callable[..., Any], service_token: str
) -> Callable[[str, list[AuditEntry]], Any]:
    """Sends a batch to the admin service's `/api/audit/entries` (through `send`, the
    admin replicas' balancer), with the gateway's own credential."""
    headers = {"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"}

    async def send_batch(batch_id: str, batch: list[AuditEntry]) -> None:
        body = msgspec.json.encode(AuditBatch(batch_id=batch_id, entries=batch))

        async def attempt(base: str) -> tuple[int, bytes]:
            async with session.post(
                f"{base}/api/audit/entries", data=body, headers=headers
            ) as answer:
                return answer.status, await answer.read()

        status, text = await send("POST", attempt)
        if status in (200, 201):
            return
        if status == 500 or (400 <= status < 500 and status not in (408, 429)):
            raise Refused(f"the admin service answered {status}: {text[:300]!r}")
        raise RuntimeError(f"the admin service answered {status}")

    return send_batch
