"""Several files of the same rows from one read of them (the ZIP's CSV, NDJSON and
Parquet of a kind, and both files of the daily table).

A ZIP is written one entry after another, so only one file can stream to the client
at a time. Reading the rows again for every format costs the services and the
database a full export each time (and the daily table recomputes its features);
instead the first file streams as the rows arrive while the others are written,
from the same rows, to temporary files, which follow once the first has ended.
Memory stays flat: a few chunks of rows between the reader and each spool, and a
buffer of at most `SPOOL_WRITE_BYTES` per spool. The disk holds the spooled files
until they have been sent (`EMOGO_GATEWAY_TEMP_DIR`; the files have no name,
so nothing is left there if the process dies).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

Row = dict[str, Any]
Format = Callable[[AsyncIterator[Row]], AsyncIterator[bytes]]

ROWS_PER_HANDOVER = 1000
HANDOVERS_IN_FLIGHT = 4
SPOOL_WRITE_BYTES = 1024 * 1024


async def one_read(
    rows: AsyncIterator[Row], files: list[tuple[str, Format]], spool_dir: Path
) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    """(name, pieces) of each of `files`, in order, all made from one read of `rows`;
    all but the first wait in temporary files in `spool_dir` (made if missing).

    Take each file's pieces to the end before asking for the next file (as a ZIP
    writer does). A spool that fails makes the next file raise its error."""
    (first_name, first_format), rest = files[0], files[1:]
    if rest:
        await asyncio.to_thread(spool_dir.mkdir, parents=True, exist_ok=True)
    spools = [_Spool(name, make, spool_dir) for name, make in rest]
    try:
        yield first_name, first_format(_handed_over(rows, spools))
        for spool in spools:
            yield spool.name, spool.read_back()
    finally:
        for spool in spools:
            spool.discard()


async def _handed_over(rows: AsyncIterator[Row], spools: list[_Spool]) -> AsyncIterator[Row]:
    """The rows, passed on to every spool in chunks as they go by."""
    for spool in spools:
        spool.start()
    chunk: list[Row] = []
    async for row in rows:
        yield row
        chunk.append(row)
        if len(chunk) >= ROWS_PER_HANDOVER:
            for spool in spools:
                await spool.take(chunk)
            chunk = []
    for spool in spools:
        if chunk:
            await spool.take(chunk)
        await spool.take(None)


class _Spool:
    """One file written to a temporary file from the chunks handed over."""

    def __init__(self, name: str, make: Format, folder: Path) -> None:
        self.name = name
        self._make = make
        self._chunks: asyncio.Queue[list[Row] | None] = asyncio.Queue(HANDOVERS_IN_FLIGHT)
        self._all_taken = False
        # Closed by `discard`, when the export ends whichever way it ends.
        self._file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="emogo-export-", dir=folder
        )
        self._writing: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writing = asyncio.create_task(self._write())

    async def take(self, chunk: list[Row] | None) -> None:
        await self._chunks.put(chunk)

    async def _rows(self) -> AsyncIterator[Row]:
        while (chunk := await self._chunks.get()) is not None:
            for row in chunk:
                yield row
        self._all_taken = True

    async def _write(self) -> None:
        try:
            buffered: list[bytes] = []
            size = 0
            async for piece in self._make(self._rows()):
                buffered.append(piece)
                size += len(piece)
                if size >= SPOOL_WRITE_BYTES:
                    await asyncio.to_thread(self._file.write, b"".join(buffered))
                    buffered, size = [], 0
            await asyncio.to_thread(self._file.write, b"".join(buffered))
        except Exception:
            # The reader must never wait on a spool that has stopped: take (and drop)
            # the rest; the error is raised when this file is asked for.
            while not self._all_taken:
                self._all_taken = await self._chunks.get() is None
            raise

    async def read_back(self) -> AsyncIterator[bytes]:
        if self._writing is None:
            raise RuntimeError(f"{self.name} was asked for before the rows were read")
        await self._writing  # raises what stopped the file
        await asyncio.to_thread(self._file.seek, 0)
        while piece := await asyncio.to_thread(self._file.read, SPOOL_WRITE_BYTES):
            yield piece

    def discard(self) -> None:
        if self._writing is not None:
            if self._writing.done():
                if not self._writing.cancelled():
                    self._writing.exception()  # retrieved: the export has ended anyway
            else:
                self._writing.cancel()
        self._file.close()
