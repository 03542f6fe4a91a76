"""The deletion journal against the real database, no processes: what the admin service
does at start (services.admin.research.replay.reconcile) after a restore. A receipt
the database does not know is of a deletion to do again, and the participant is
stopped at once; a receipt this server did not sign is not acted on; a receipt only
the database holds is written to the journal. (The whole restore, with the deletion
done again through the services: tests/e2e/test_backups.py.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

from services.admin.models import DeletionJob, Participant
from services.admin.research.journal import DeletionJournal
from services.admin.research.receipts import SIGNATURE_ALGORITHM, sign
from services.admin.research.replay import reconcile
from services.admin.settings import load_settings
from services.common.research.wiring import SHARED_DOCUMENTS
from services.common.web.timestamps import parse_instant
from tests.support import SECRET_KEY, service_environ


def receipt(study_id: str, user_id: str | None, secret: str = SECRET_KEY) -> dict[str, Any]:
    made: dict[str, Any] = {
        "receipt_id": f"rcpt_{uuid.uuid4().hex[:20]}",
        "study_id": study_id,
        "user_id": user_id,
        "requested_by": {"credential_id": "admin", "role": "admin"},
        "requested_at": "2026-11-02T09:00:00.000Z",
        "completed_at": "2026-11-02T09:00:03.000Z",
        "deleted": {"sentiments": 3, "gps_fixes": 2, "vlogs": 0, "vlog_files": [], "also": []},
        "signature_algorithm": SIGNATURE_ALGORITHM,
    }
    made["signature"] = sign(made, secret)
    return made


def test_the_journal_and_the_database_are_brought_level(
    mongodb_uri: str, db_name: str, tmp_path: Path
) -> None:
    settings = load_settings(service_environ(mongodb_uri, tmp_path, db_name))
    study_id = f"journal-{uuid.uuid4().hex[:8]}"
    after_backup = receipt(study_id, "P1")
    forged = receipt(study_id, "P2", secret="not-this-servers-key-0123456789-0123456789")
    only_in_database = receipt(study_id, "P3")
    journal = DeletionJournal(settings.deletion_journal)
    journal._append(after_backup)
    journal._append(forged)
    with settings.deletion_journal.open("a") as handle:
        handle.write('{"receipt_id": "rcpt_cut')  # a line a crash cut short

    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        database = client[db_name]
        await init_beanie(
            database=database, document_models=[DeletionJob, Participant, *SHARED_DOCUMENTS]
        )
        participants = Participant.get_pymongo_collection()
        for user_id in ("P1", "P2"):
            await participants.insert_one(
                {"study_id": study_id, "user_id": user_id, "status": "active", "token_id": None}
            )
        await DeletionJob.get_pymongo_collection().insert_one(
            {
                **{k: only_in_database[k] for k in ("receipt_id", "study_id", "user_id")},
                "requested_by": only_in_database["requested_by"],
                "requested_at": parse_instant(only_in_database["requested_at"]),
                "state": "done",
                "receipt": only_in_database,
            }
        )

        assert await reconcile(settings) == 1
        assert await reconcile(settings) == 0, "done again once, however often it starts"

        jobs = DeletionJob.get_pymongo_collection()
        redo = await jobs.find_one({"receipt_id": after_backup["receipt_id"]})
        assert redo is not None
        assert (redo["state"], redo["user_id"], redo["reapplying"]) == (
            "deleting",
            "P1",
            after_backup,
        )
        assert await jobs.find_one({"receipt_id": forged["receipt_id"]}) is None
        status = {
            row["user_id"]: row["status"] async for row in participants.find({"study_id": study_id})
        }
        assert status == {"P1": "withdrawn", "P2": "active"}
        await client.close()

    asyncio.run(scenario())
    kept = journal.receipts()
    assert kept[only_in_database["receipt_id"]] == only_in_database
    assert set(kept) == {
        after_backup["receipt_id"],
        forged["receipt_id"],
        only_in_database["receipt_id"],
    }
    lines = settings.deletion_journal.read_text().splitlines()
    assert (
        sum(json.loads(line)["receipt_id"] == only_in_database["receipt_id"] for line in lines[3:])
        == 1
    ), "written once, however often it starts"
