"""The embedded database (SecantusDB) the launcher starts when `MONGODB_URI` is not
set, and how to tell that a MongoDB answers (docs/adr/0001, 0002)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from services.launcher.config import StackError


def mongo_ready(uri: str) -> Callable[[], bool]:
    def check() -> bool:
        client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    return check


def secantus_argv(port: int, storage: Path | str, log_level: str = "WARNING") -> list[str]:
    """The command that runs the embedded database on 127.0.0.1:`port` with its files
    in `storage` (":memory:" for a throw-away one)."""
    return [
        secantus_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage),
        "--log-level",
        log_level,
        # A commit is on disk before the write is acknowledged: without this, a
        # crash of the database loses writes its clients were told are stored.
        "--sync-on-commit",
        # No oplog: as a one-node replica set it also wrote every write to its oplog,
        # which EmoGo never reads (no change streams, no transactions, no retryable
        # writes). Without it the database's CPU per write was 0.81 (single insert),
        # 0.88 (a fix in a batch) and 0.51 (an 8 MB video into GridFS) of that
        # (bench/embedded_settings.py).
        "--standalone",
    ]


def secantus_command() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise StackError(
            "secantusd-py (the embedded database) is not installed. Run `make run`, which "
            "installs it, or set MONGODB_URI to a MongoDB server."
        )
    return found
