"""The gateway's audit recorder and journal, in process: what the admin service refuses
is split off and never holds up the other entries; what a killed process journaled is
sent by the next one. No processes, no sleeps: `flush` is called directly."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from services.common.research.audit import GENESIS, AuditEntry, block_of, chained, verify
from services.gateway.audit.journal import AuditJournal
from services.gateway.audit.recorder import AuditRecorder, Refused
from tests.support import audit_read


def entry(request_id: str, **filters: str) -> AuditEntry:
    return audit_read(request_id, filters=filters)


class AdminService:
    """Stores batches by id, as the admin service does, and refuses any batch holding
    an entry whose filters say `bad`; `down` makes every call fail as a lost connection."""

    def __init__(self) -> None:
        self.stored: dict[str, list[AuditEntry]] = {}
        self.down = False

    async def send(self, batch_id: str, entries: list[AuditEntry]) -> None:
        if self.down:
            raise ConnectionError("admin service unreachable")
        if any(e.filters.get("x") == "bad" for e in entries):
            raise Refused("the admin service answered 500")
        self.stored.setdefault(batch_id, list(entries))

    def request_ids(self) -> list[str]:
        return sorted(e.request_id for batch in self.stored.values() for e in batch)


def test_a_refused_entry_is_split_off_and_stored_without_its_filters(tmp_path: Path) -> None:
    admin = AdminService()
    recorder = AuditRecorder(admin.send, AuditJournal(tmp_path))
    for n in range(9):
        recorder.record(entry(f"r{n}", x="bad" if n == 4 else "good"))
    asyncio.run(recorder.flush())
    assert admin.request_ids() == sorted(f"r{n}" for n in range(9))
    [plain] = [e for batch in admin.stored.values() for e in batch if e.request_id == "r4"]
    assert plain.filters == {"refused": "filters left out"}
    assert recorder.left() == 0
    assert list(tmp_path.glob("*.ndjson")) == [recorder.journal.current.path]


def test_entries_wait_on_disk_while_the_admin_service_is_down(tmp_path: Path) -> None:
    admin = AdminService()
    admin.down = True
    recorder = AuditRecorder(admin.send, AuditJournal(tmp_path))
    for n in range(3):
        recorder.record(entry(f"w{n}"))
    asyncio.run(recorder.flush())
    assert admin.stored == {}
    assert recorder.left() == 3
    admin.down = False
    asyncio.run(recorder.flush())
    assert admin.request_ids() == ["w0", "w1", "w2"]


def test_a_killed_process_journal_is_sent_by_the_next(tmp_path: Path) -> None:
    first = AuditJournal(tmp_path)
    for n in range(4):
        first.append(entry(f"k{n}"))
    # The process is gone: its lock goes with its descriptor, its file stays.
    os.close(first.current.descriptor)
    with first.current.path.open("ab") as torn:
        torn.write(b'{"time": "2026-12')  # a line the kill cut short
    admin = AdminService()
    recorder = AuditRecorder(admin.send, AuditJournal(tmp_path))
    recorder._sealed.extend(recorder.journal.orphans())
    asyncio.run(recorder.flush())
    assert admin.request_ids() == ["k0", "k1", "k2", "k3"]
    assert not first.current.path.exists()


def test_a_live_process_journal_is_not_taken(tmp_path: Path) -> None:
    live = AuditJournal(tmp_path)
    live.append(entry("mine"))
    assert AuditJournal(tmp_path).orphans() == []


def test_verify_checks_each_block_index_and_field() -> None:
    block = block_of("batch", chained([entry("a"), entry("b")], 0, GENESIS))

    async def check(blocks: list[dict]) -> tuple[bool, str | None]:
        async def each() -> object:
            for one in blocks:
                yield one

        result = await verify(each())  # type: ignore[arg-type]
        return result.ok, result.reason

    assert asyncio.run(check([block])) == (True, None)
    for name, value in (("credential_ids", []), ("participants", ["someone"]), ("note", 1)):
        ok, reason = asyncio.run(check([{**block, name: value}]))
        assert not ok, name
        assert reason is not None
        assert reason.startswith("block 1"), reason
    added = {**block, "entries": [{**block["entries"][0], "note": 1}, block["entries"][1]]}
    assert asyncio.run(check([added]))[0] is False
