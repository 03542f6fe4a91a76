"""One read of rows, several files (services.gateway.exports.fanout): every file whole, the
rows read once, and no export left waiting when a file or the read fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.gateway.exports import fanout
from services.gateway.exports.fanout import one_read

DEADLINE_SECONDS = 10


class Rows:
    """Rows 0..count-1, counting how often they are read; optionally failing at `fail_at`."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.reads = 0

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        self.reads += 1
        for n in range(self.count):
            if n == self.fail_at:
                raise ConnectionError("the service went away")
            if n % 500 == 0:
                await asyncio.sleep(0)
            yield {"n": n}


async def as_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for row in rows:
        yield json.dumps(row).encode() + b"\n"


async def as_total(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    total = 0
    async for row in rows:
        total += row["n"]
        await asyncio.sleep(0)  # a slow file: the reader must wait for it, not pile up
    yield str(total).encode()


async def broken_after_ten(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    seen = 0
    async for _ in rows:
        seen += 1
        if seen == 10:
            raise ValueError("cannot encode row 10")
    yield b"never"


async def collect(rows: Rows, files: list, folder: Path) -> dict[str, bytes | Exception]:
    made: dict[str, bytes | Exception] = {}
    async for name, pieces in one_read(aiter(rows), files, folder):
        try:
            made[name] = b"".join([piece async for piece in pieces])
        except Exception as error:  # the test looks at which file failed, and how
            made[name] = error
            break
    return made


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, DEADLINE_SECONDS))


def test_every_file_is_whole_and_the_rows_are_read_once(tmp_path: Path) -> None:
    count = 10 * fanout.ROWS_PER_HANDOVER * fanout.HANDOVERS_IN_FLIGHT + 7
    rows = Rows(count)
    files = [("lines", as_lines), ("total", as_total), ("again", as_lines)]
    made = run(collect(rows, files, tmp_path / "spools"))
    expected_lines = b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(count))
    assert made == {
        "lines": expected_lines,
        "total": str(sum(range(count))).encode(),
        "again": expected_lines,
    }
    assert rows.reads == 1
    assert list((tmp_path / "spools").iterdir()) == []  # nameless files, gone once closed


def test_no_rows_still_make_every_file(tmp_path: Path) -> None:
    made = run(collect(Rows(0), [("lines", as_lines), ("total", as_total)], tmp_path))
    assert made == {"lines": b"", "total": b"0"}


def test_a_file_that_fails_raises_its_error_in_its_turn_without_stalling_the_rest(
    tmp_path: Path,
) -> None:
    rows = Rows(5 * fanout.ROWS_PER_HANDOVER * fanout.HANDOVERS_IN_FLIGHT)
    made = run(collect(rows, [("lines", as_lines), ("broken", broken_after_ten)], tmp_path))
    assert made["lines"].count(b"\n") == rows.count
    assert isinstance(made["broken"], ValueError)


def test_a_read_that_fails_ends_the_export_without_waiting_on_the_spools(
    tmp_path: Path,
) -> None:
    rows = Rows(3 * fanout.ROWS_PER_HANDOVER, fail_at=2 * fanout.ROWS_PER_HANDOVER + 5)
    made = run(collect(rows, [("lines", as_lines), ("total", as_total)], tmp_path))
    assert isinstance(made["lines"], ConnectionError)
    assert "total" not in made


def test_an_export_abandoned_halfway_stops_its_spools(tmp_path: Path) -> None:
    async def abandon() -> tuple[int, int]:
        """The spools' writers: how many there were, how many still run once the
        export was dropped."""
        before = asyncio.all_tasks()
        files = one_read(aiter(Rows(50_000)), [("lines", as_lines), ("total", as_total)], tmp_path)
        _, pieces = await anext(files)
        await anext(pieces)  # the client went away after the first piece
        await pieces.aclose()
        await files.aclose()
        spools = [
            task
            for task in asyncio.all_tasks() - before
            if task.get_coro().__qualname__ == "_Spool._write"
        ]
        await asyncio.sleep(0)  # a cancelled task ends at its next step
        return len(spools), sum(not task.done() for task in spools)

    assert run(abandon()) == (1, 0)


def test_a_file_asked_for_before_the_rows_were_read_is_an_error(tmp_path: Path) -> None:
    async def skip_the_first() -> None:
        files = one_read(aiter(Rows(3)), [("lines", as_lines), ("total", as_total)], tmp_path)
        await anext(files)
        _, pieces = await anext(files)
        await anext(pieces)

    with pytest.raises(RuntimeError, match="before the rows were read"):
        run(skip_the_first())
