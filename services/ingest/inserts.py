"""Single records that arrive together are stored together (group commit).

Phones post one record per request. Each insert is a database round trip whose cost
(the driver's command machinery, two socket writes and reads, the server's command
handling) is many times that of the record itself. Records that arrive while an
insert is in flight wait for it and then go as one unordered `insert_many`; a record
that arrives alone goes at once. Each request is still answered only after its own
record is acknowledged, so nothing is confirmed that is not stored, and a record
refused by the database (a repeated client id) is refused alone.

`bench/cpu_cost.py` measures what a single post costs with it, per process (the
docs/reliability-and-scaling.md, its Scaling table).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

DUPLICATE_KEY = 11000


class GroupInserter:
    """Inserts into one collection, at most one batch in flight at a time."""

    def __init__(self, collection: Callable[[], AsyncCollection], most: int = 500) -> None:
        self._collection = collection
        self._most = most
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def insert(self, document: dict[str, Any]) -> None:
        """Returns once `document` is stored; raises what the database said about it
        alone (DuplicateKeyError for a repeated unique key)."""
        acknowledged = asyncio.get_running_loop().create_future()
        self._waiting.append((document, acknowledged))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        await acknowledged

    async def drain(self) -> None:
        """Waits until everything handed over is sent (the app's shutdown)."""
        while self._sender is not None:
            await asyncio.shield(self._sender)

    async def _send_all(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._most]
                del self._waiting[: self._most]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        refused: dict[int, BaseException] = {}
        try:
            if len(batch) == 1:
                await self._collection().insert_one(batch[0][0])
            else:
                await self._collection().insert_many([doc for doc, _ in batch], ordered=False)
        except BulkWriteError as failure:
            for error in failure.details.get("writeErrors", []):
                kind = DuplicateKeyError if error.get("code") == DUPLICATE_KEY else OperationFailure
                refused[error["index"]] = kind(error.get("errmsg", ""), error.get("code"), error)
        except asyncio.CancelledError:
            for _, acknowledged in batch:
                acknowledged.cancel()
            raise
        except Exception as failure:  # the whole batch shares its fate
            for _, acknowledged in batch:
                if not acknowledged.done():
                    acknowledged.set_exception(failure)
            return
        for index, (_, acknowledged) in enumerate(batch):
            if acknowledged.done():  # its request went away; the record is stored anyway
                continue
            if index in refused:
                acknowledged.set_exception(refused[index])
            else:
                acknowledged.set_result(None)
