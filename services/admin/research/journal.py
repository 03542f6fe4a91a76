"""The deletion journal: every deletion receipt the admin service signs, also kept in a
file outside the database (EMOGO_DELETION_JOURNAL, one JSON line each, fsynced).

A database restored from a backup taken before a deletion still holds what was
deleted; the journal is what remembers the deletion. At start the admin service
compares the two (services.admin.research.replay) and does again every deletion the
database does not know, so a restore never brings back data a participant had deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("emogo.admin")


class DeletionJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def keep(self, receipt: dict[str, Any]) -> None:
        """Appends a receipt. A failure is logged, not raised: the deletion is done and
        its receipt is in the database, from which the next start writes it here."""
        try:
            await asyncio.to_thread(self._append, receipt)
        except OSError as problem:
            logger.error(
                "the deletion journal could not be written",
                extra={"path": str(self.path), "error": type(problem).__name__},
            )

    def _append(self, receipt: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(receipt, sort_keys=True, separators=(",", ":")) + "\n"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode())
            # On disk before the deletion is reported done: a backup restored after a
            # crash must still learn of it.
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def receipts(self) -> dict[str, dict[str, Any]]:
        """The receipts kept, by receipt id (a line written twice counts once; a line
        that is not a receipt, such as one cut short by a crash, is skipped)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        kept: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            try:
                receipt = json.loads(line)
                kept[str(receipt["receipt_id"])] = receipt
            except (ValueError, KeyError, TypeError):
                if line.strip():
                    logger.warning(
                        "a line of the deletion journal is not a receipt",
                        extra={"path": str(self.path), "line": number},
                    )
        return kept
