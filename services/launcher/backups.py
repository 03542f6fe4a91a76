"""Backups of the embedded database, taken while the stack runs, and restoring one into
a stopped stack (docs/backups.md).

A backup is a folder `emogo-backup-<UTC time>` with two files: `database.tar.gz`, the
database's files as of one checkpoint, written by the database itself while it keeps
serving (SecantusDB's `secantusAdmin.backupArchive`: WiredTiger's backup cursor over
a checkpoint, so every collection is from the same moment), and `manifest.json` (when,
and the archive's size and sha256). Vlogs' bytes are in the database (GridFS), so the
archive holds them too. The folder appears under its final name only when complete.

Restoring never deletes: the database being replaced is moved aside. Deletions made
after the backup are not lost with it: the admin service keeps every deletion receipt
outside the database too, and does again, on its next start, every deletion the
restored database does not know (services.admin.research.journal).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from services.launcher.config import StackConfig, StackError, local_mongodb_uri
from services.launcher.database import mongo_ready, secantus_argv

PREFIX = "emogo-backup-"
ARCHIVE = "database.tar.gz"
MANIFEST = "manifest.json"
FORMAT = 1
# A database started only to take or check a backup: how long it may take to answer.
TEMPORARY_START_SECONDS = 60.0


def database_dir(config: StackConfig) -> Path:
    return config.data_dir / "db"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def temporary_database(storage: Path, log: Path) -> Iterator[str]:
    """The embedded database on `storage`, started on a free port for as long as the
    block runs; its URI. Fails clearly when another process has the files open."""
    port = _free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            secantus_argv(port, storage),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    uri = local_mongodb_uri(port)
    try:
        deadline = time.monotonic() + TEMPORARY_START_SECONDS
        ready = mongo_ready(uri)
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise StackError(
                    f"The database files in {storage} could not be opened (is the stack "
                    f"still running on them?). See {log}."
                )
            time.sleep(0.2)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def take_backup(config: StackConfig, into: Path, now: datetime | None = None) -> Path:
    """Writes a backup of the embedded database into a new folder under `into`; its
    path. The running stack's database writes it; a stopped stack's is started for it."""
    if config.external_mongodb_uri:
        raise StackError(
            "MONGODB_URI points to a MongoDB of your own: back it up with mongodump "
            "(docs/backups.md says how, and what to keep beside it)."
        )
    moment = now or datetime.now(UTC)
    into.mkdir(parents=True, exist_ok=True)
    final = into / f"{PREFIX}{_stamp(moment)}"
    suffix = 1
    while final.exists():
        suffix += 1
        final = into / f"{PREFIX}{_stamp(moment)}-{suffix}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        if mongo_ready(config.mongodb_uri)():
            _archive(config.mongodb_uri, partial / ARCHIVE)
        else:
            log = config.log_dir / "backup-database.console.log"
            with temporary_database(database_dir(config), log) as uri:
                _archive(uri, partial / ARCHIVE)
        manifest = {
            "format": FORMAT,
            "created_at": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "database": "embedded SecantusDB (GridFS holds the vlogs' bytes)",
            "files": {
                ARCHIVE: {
                    "bytes": (partial / ARCHIVE).stat().st_size,
                    "sha256": _sha256(partial / ARCHIVE),
                }
            },
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _archive(uri: str, output: Path) -> None:
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command("secantusAdmin.backupArchive", outputPath=str(output))
    except PyMongoError as problem:
        raise StackError(f"The database could not write the backup: {problem}") from None
    finally:
        client.close()


def backups_in(folder: Path) -> list[Path]:
    """The complete backups in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.iterdir()
        if path.is_dir() and path.name.startswith(PREFIX) and (path / MANIFEST).exists()
    ]
    return sorted(found, key=_taken_order)


def _taken_order(path: Path) -> tuple[str, int]:
    """By time, then by the number given to a second backup within the same second."""
    stamp, _, number = path.name.removeprefix(PREFIX).partition("-")
    return stamp, int(number) if number.isdigit() else 1


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Deletes all but the newest `keep` backups in `folder`; the ones deleted."""
    old = backups_in(folder)[:-keep] if keep > 0 else []
    for path in old:
        shutil.rmtree(path)
    return old


def checked_manifest(backup: Path) -> dict:
    """The backup's manifest, once its archive is found whole (size and sha256)."""
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
        expected = manifest["files"][ARCHIVE]
    except (OSError, ValueError, KeyError, TypeError):
        raise StackError(f"{backup} is not an EmoGo backup (no readable {MANIFEST})") from None
    archive = backup / ARCHIVE
    if not archive.is_file() or archive.stat().st_size != expected["bytes"]:
        raise StackError(f"{archive} is missing or not of the size the manifest says")
    if _sha256(archive) != expected["sha256"]:
        raise StackError(f"{archive} is damaged: its sha256 differs from the manifest's")
    return manifest


@dataclass(frozen=True)
class Restored:
    created_at: str
    collections: int
    replaced: Path | None  # where the database that was replaced went


def restore_backup(config: StackConfig, backup: Path, now: datetime | None = None) -> Restored:
    """Puts the backup's database in place of the stopped stack's; the one it replaces
    is moved aside, never deleted."""
    if config.external_mongodb_uri:
        raise StackError(
            "MONGODB_URI points to a MongoDB of your own: restore it with mongorestore "
            "(docs/backups.md)."
        )
    if mongo_ready(config.mongodb_uri)():
        raise StackError("The stack is running: stop it (Ctrl-C in `make run`) and restore then.")
    manifest = checked_manifest(backup)
    # Imported here: only restoring needs the database's own extraction.
    from secantus.storage import extract_backup_archive

    current = database_dir(config)
    moment = now or datetime.now(UTC)
    restoring = current.with_name(f"db.restoring-{_stamp(moment)}")
    shutil.rmtree(restoring, ignore_errors=True)
    try:
        extract_backup_archive(str(backup / ARCHIVE), str(restoring))
    except RuntimeError as problem:
        shutil.rmtree(restoring, ignore_errors=True)
        raise StackError(f"The backup could not be extracted: {problem}") from None
    # Opened once before it replaces anything: a backup that does not open is refused.
    log = config.log_dir / "restore-database.console.log"
    with temporary_database(restoring, log) as uri:
        client: MongoClient = MongoClient(uri)
        try:
            collections = len(client[config.db_name].list_collection_names())
        finally:
            client.close()
    replaced = None
    if current.exists():
        replaced = current.with_name(f"db.before-restore-{_stamp(moment)}")
        current.rename(replaced)
    restoring.rename(current)
    return Restored(manifest["created_at"], collections, replaced)


class BackupSchedule:
    """Takes a backup every `seconds` while the stack runs and keeps the newest `keep`
    (EMOGO_BACKUP_EVERY, EMOGO_BACKUP_KEEP). A failed backup is reported and the next
    one is tried on time."""

    def __init__(self, config: StackConfig, folder: Path, seconds: float, keep: int) -> None:
        self.config = config
        self.folder = folder
        self.seconds = seconds
        self.keep = keep
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backups", daemon=True)

    def step(self) -> Path | None:
        try:
            made = take_backup(self.config, self.folder)
        except StackError as problem:
            print(f"scheduled backup failed: {problem}", file=sys.stderr, flush=True)
            return None
        prune_backups(self.folder, self.keep)
        print(f"backup written: {made}", flush=True)
        return made

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds):
            self.step()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
