"""The gateway's audit journal: each audit entry on local disk, synced, before the answer
it records completes, so a gateway killed at any moment loses no recorded read.

Entries are appended, one JSON line each, to the process's open segment file
(`<folder>/<pid>-<random>.ndjson`), which the process holds under an exclusive `flock`.
To send entries, the recorder seals the segment (a new one opens) and removes the sealed
file once the admin service has stored its entries. A segment no live process holds
(its process was killed) is an orphan: the next gateway process to start takes it and
sends it again. The admin service stores a batch id once, so an orphan whose entries
were stored just before the kill is not stored twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from services.common.research.audit import AuditEntry

logger = logging.getLogger("emogo.audit")
SUFFIX = ".ndjson"


@dataclass
class Segment:
    """One journal file and the entries written to it."""

    path: Path
    descriptor: int
    entries: list[AuditEntry] = field(default_factory=list)

    @property
    def batch_id(self) -> str:
        return self.path.stem


class AuditJournal:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder = folder
        self.current = self._open_segment()

    def _open_segment(self) -> Segment:
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex}{SUFFIX}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return Segment(path, descriptor)

    def append(self, entry: AuditEntry) -> None:
        """Writes `entry` and waits until it is on disk (fdatasync: the data, not the
        file's times). Blocking, on purpose: no other entry can come between the write
        and the entry's place in the segment's list."""
        os.write(self.current.descriptor, msgspec.json.encode(entry) + b"\n")
        os.fdatasync(self.current.descriptor)
        self.current.entries.append(entry)

    def seal(self) -> Segment | None:
        """The open segment, for sending, when it holds entries; a new one is opened."""
        if not self.current.entries:
            return None
        sealed, self.current = self.current, self._open_segment()
        return sealed

    @staticmethod
    def done(segment: Segment) -> None:
        """A segment whose entries are stored: removed, its lock released."""
        segment.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(segment.descriptor)

    def orphans(self) -> list[Segment]:
        """Segments no live process holds, taken over (locked) by this one, oldest first."""
        taken = []
        candidates = sorted(self.folder.glob(f"*{SUFFIX}"), key=_modified)
        for path in candidates:
            if path == self.current.path:
                continue
            try:
                descriptor = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # removed by its owner meanwhile
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)  # a live process's
                continue
            taken.append(Segment(path, descriptor, read_entries(path)))
        return taken

    def close(self) -> None:
        """At a clean stop: the open segment is removed when empty, else left for the
        next start (its entries could not be stored)."""
        if not self.current.entries:
            self.done(self.current)
        else:
            with contextlib.suppress(OSError):
                os.close(self.current.descriptor)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def read_entries(path: Path) -> list[AuditEntry]:
    """The entries of a journal file; a line cut short by a kill is left out (its
    answer had not completed)."""
    entries = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_bytes().splitlines():
            try:
                entries.append(msgspec.json.decode(line, type=AuditEntry))
            except msgspec.DecodeError:
                logger.warning("a cut-short line of the audit journal was left out")
    return entries
