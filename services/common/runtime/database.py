"""One PyMongo async client per process, opened in the app's lifespan, with Beanie."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pymongo
from beanie import Document, init_beanie
from litestar import Litestar
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from services.common.runtime.settings import ServiceSettings

logger = logging.getLogger("emogo.database")
PING_TIMEOUT_SECONDS = 2.0
SERVER_SELECTION_TIMEOUT_MS = 3000


# What is left of a request's database time once one of its steps failed.
FAIL_FAST_SECONDS = 0.05


def fail_fast_from_now() -> None:
    """After a database step of this request failed (past its deadline, or the server
    unreachable), the request's next steps fail at once instead of each waiting its own
    deadline again: a request answers 503 within one deadline, not one per step.

    PyMongo's own deadline (`pymongo.timeout`, a context variable) is set for the rest
    of the request's task and never reset: the task, and the context with it, ends
    with the request. Tasks the request started before now keep their own deadlines."""
    pymongo.timeout(FAIL_FAST_SECONDS).__enter__()


def make_client(settings: ServiceSettings) -> AsyncMongoClient[dict[str, Any]]:
    """The process's client. Two promises are made here for every service:

    - Confirmed means durable: a write is acknowledged by a majority of the replica
      set and is in the journal (on a single node, on disk) before a client is told
      it is stored. A URI that names `w` or `journal` itself keeps its own choice.
    - Bounded waits: every operation has a deadline (`timeoutMS`, applied to each
      command and each cursor batch), so a slow or frozen database is a 503 with
      Retry-After within seconds, not a request that hangs as long as it does."""
    return AsyncMongoClient(
        settings.mongodb_uri,
        appname=f"emogo-{settings.service}",
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        timeoutMS=round(settings.db_timeout * 1000),
        **durable_write_concern(settings.mongodb_uri),
    )


def durable_write_concern(uri: str) -> dict[str, Any]:
    """`w=majority, journal=True` unless the URI chooses its own write concern."""
    options = {name.strip().lower() for name, _, _ in (pair.partition("=") for pair in _query(uri))}
    chosen: dict[str, Any] = {}
    if "w" not in options:
        chosen["w"] = "majority"
    if "journal" not in options:
        chosen["journal"] = True
    return chosen


def _query(uri: str) -> list[str]:
    _, _, query = uri.partition("?")
    return [pair for pair in query.replace(";", "&").split("&") if pair]


async def ping(client: AsyncMongoClient[dict[str, Any]]) -> bool:
    try:
        await asyncio.wait_for(client.admin.command("ping"), PING_TIMEOUT_SECONDS)
    except (PyMongoError, TimeoutError, OSError):
        return False
    return True


async def _init_beanie_with_retry(
    client: AsyncMongoClient[dict[str, Any]],
    settings: ServiceSettings,
    documents: Sequence[type[Document]],
) -> None:
    """The database may start after the service (compose, launcher): retry until the deadline."""
    deadline = time.monotonic() + settings.db_startup_timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            await client.admin.command("ping")
            # Creating an index on a large collection (a new one after an upgrade)
            # takes far longer than one operation's deadline; it runs once.
            with pymongo.timeout(INDEX_BUILD_TIMEOUT_SECONDS):
                await init_beanie(
                    database=client[settings.db_name], document_models=list(documents)
                )
                await drop_retired_indexes(documents)
            return
        except PyMongoError as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"Cannot reach MongoDB for database {settings.db_name!r} after "
                    f"{attempt} attempts: {exc.__class__.__name__}. Check MONGODB_URI "
                    "and that the server is running."
                ) from exc
            logger.warning("database not reachable yet, retrying", extra={"attempt": attempt})
            await asyncio.sleep(min(2.0, 0.2 * attempt))


INDEX_BUILD_TIMEOUT_SECONDS = 3600.0
# A Document's indexes that a newer one replaced (listed in a `retired_indexes` class
# attribute): dropped at start, after Beanie has built their replacements, so that a
# unique key is never unguarded.
RETIRED_INDEXES = "retired_indexes"


async def drop_retired_indexes(documents: Sequence[type[Document]]) -> None:
    for document in documents:
        retired = getattr(document, RETIRED_INDEXES, ())
        if not retired:
            continue
        collection = document.get_pymongo_collection()
        present = set(await collection.index_information())
        for name in retired:
            if name in present:
                await collection.drop_index(name)
                logger.info("index retired", extra={"index": name})


def mongo_lifespan(
    settings: ServiceSettings,
    documents: Sequence[type[Document]],
    prepare: Callable[[], Awaitable[str]] | None = None,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Opens the client and initialises Beanie for the service's documents; closes on
    exit. `prepare` runs first (the admin service's database bootstrap)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if prepare is not None:
            logger.info(await prepare())
        client = make_client(settings)
        try:
            await _init_beanie_with_retry(client, settings, documents)
            app.state.mongo = client
            logger.info("database ready", extra={"database": settings.db_name})
            yield
        finally:
            await client.close()

    return lifespan
