"""Withdrawal with deletion, in one call through the gateway: everything the
participant sent in the study is gone from every collection and GridFS bucket
(checked in the database itself), the same id in another study is another person
and keeps everything, the receipt says exactly what went and verifies, and a
deletion cut short by a service that is down completes when the call is made again."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from bson import ObjectId
from pymongo import MongoClient

from tests.conftest import Stack
from tests.gateway.test_compliance import enrolled, send
from tests.media.conftest import opencv_video
from tests.support import wait_until

# The record of the withdrawal itself, not the participant's data: who is withdrawn
# (so the id is not issued again), the audit trail and the receipts.
RECORDS_OF_THE_WITHDRAWAL = {"participants", "audit_trail", "deletion_receipts", "access_tokens"}


def new_study(stack: Stack) -> str:
    study_id = f"erase-{uuid.uuid4().hex[:8]}"
    with stack.client("admin") as admin:
        created = admin.post("/api/studies", json={"study_id": study_id, "name": "Erase"})
        assert created.status_code == 201, created.text
    return study_id


def contribute(stack: Stack, token: dict[str, str], user_id: str, video: bytes) -> str:
    """Three sentiments, two GPS fixes and one vlog; returns the vlog's sha256."""
    send(
        stack,
        token,
        "sentiments",
        [{"user_id": user_id, "emotion": "calm", "intensity": 0.4} for _ in range(3)],
    )
    send(
        stack,
        token,
        "gps",
        [{"user_id": user_id, "latitude": 25.0, "longitude": 121.5} for _ in range(2)],
    )
    with stack.client() as phone:
        uploaded = phone.post(
            "/api/vlogs/upload",
            data={"user_id": user_id},
            files={"video": ("clip.mp4", video, "application/octet-stream")},
            headers=token,
        )
        assert uploaded.status_code == 201, uploaded.text
    return uploaded.json()["vlog"]["sha256"]


def withdraw(stack: Stack, study_id: str, user_id: str) -> httpx.Response:
    with stack.client("admin") as admin:
        return admin.post(
            f"/api/studies/{study_id}/participants/{user_id}/withdraw",
            json={"delete_data": True},
            timeout=120,
        )


def traces(stack: Stack, study_id: str, user_id: str, storage_ids: list[ObjectId]) -> list[str]:
    """Every document of the participant in the study, in any collection (the
    default study's records carry no study), and the bytes of their videos."""
    found = []
    with MongoClient(stack.config.mongodb_uri) as mongo:
        database = mongo[stack.db_name]
        for name in database.list_collection_names():
            if name in RECORDS_OF_THE_WITHDRAWAL:
                continue
            collection = database[name]
            for study_field in ("study_id", "study"):
                query = {"user_id": user_id, study_field: study_id}
                if collection.count_documents(query):
                    found.append(f"{name}: {collection.count_documents(query)}")
            for field in ("files_id", "_id", "storage_id", "preview_storage_id"):
                if storage_ids and collection.count_documents({field: {"$in": storage_ids}}):
                    found.append(f"{name}: bytes ({field})")
    return found


def storage_ids_of(stack: Stack, study_id: str, user_id: str) -> list[ObjectId]:
    with MongoClient(stack.config.mongodb_uri) as mongo:
        vlogs = mongo[stack.db_name]["vlogs"].find({"study_id": study_id, "user_id": user_id})
        return [
            vlog[key]
            for vlog in vlogs
            for key in ("storage_id", "preview_storage_id")
            if vlog.get(key) is not None
        ]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return opencv_video(Path(tmp_path_factory.mktemp("erase")) / "clip.mp4", "mp4v", 11)


def test_withdrawal_deletes_everything_of_the_participant_with_a_receipt(
    stack: Stack, video: bytes
) -> None:
    study, other_study = new_study(stack), new_study(stack)
    tokens = enrolled(stack, study, ["P1", "P2"])
    twin = enrolled(stack, other_study, ["P1"])  # the same id: another person
    digest = contribute(stack, tokens["P1"], "P1", video)
    contribute(stack, tokens["P2"], "P2", video)
    contribute(stack, twin["P1"], "P1", video)
    with stack.client("admin") as admin:
        # Counted before the deletion (their rollup rows going with it is checked in
        # tests/ingest/test_rollups.py, where the rows are folded on demand).
        wait_until(
            lambda: any(
                p["user_id"] == "P1"
                for p in admin.get(
                    "/api/telemetry/participants", params={"study_id": study}
                ).json()["participants"]
            ),
            30,
            "the rollups to count P1",
        )
    bytes_of_p1 = storage_ids_of(stack, study, "P1")
    assert bytes_of_p1
    assert traces(stack, study, "P1", bytes_of_p1)  # what the check below must not find

    answer = withdraw(stack, study, "P1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "withdrawn"
    receipt = body["deletion_receipt"]
    assert (receipt["study_id"], receipt["user_id"]) == (study, "P1")
    assert receipt["requested_by"] == {"credential_id": "env:admin", "role": "admin"}
    deleted = receipt["deleted"]
    assert (deleted["sentiments"], deleted["gps_fixes"], deleted["vlogs"]) == (3, 2, 1)
    assert [f["sha256"] for f in deleted["vlog_files"]] == [digest]

    # Nothing of P1 in this study is left anywhere, bytes included.
    assert traces(stack, study, "P1", bytes_of_p1) == []
    # The other participant and the twin in the other study keep everything.
    with stack.client("admin") as admin:
        for study_id, user_id in ((study, "P2"), (other_study, "P1")):
            scope = {"study_id": study_id, "user_id": user_id}
            assert admin.get("/api/sentiments/count", params=scope).json()["count"] == 3
            assert len(admin.get("/api/vlogs", params=scope).json()) == 1
        people = admin.get("/api/telemetry/participants", params={"study_id": study}).json()
        assert [p["user_id"] for p in people["participants"]] == ["P2"]
        summary = admin.get("/api/telemetry/summary", params={"study_id": study}).json()
        assert summary["sentiments"] == 3

        # The receipt is kept, and verifies; changed, it does not.
        kept = admin.get(f"/api/deletion-receipts/{receipt['receipt_id']}").json()
        assert kept == receipt
        check = admin.post("/api/deletion-receipts/verify", json=receipt).json()
        assert check == {"valid": True}
        forged = {**receipt, "deleted": {**deleted, "sentiments": 2}}
        assert admin.post("/api/deletion-receipts/verify", json=forged).json()["valid"] is False

    # Their token no longer writes anything.
    with stack.client() as phone:
        refused = phone.post(
            "/api/sentiments",
            json={"user_id": "P1", "emotion": "sad", "intensity": 0.1},
            headers=tokens["P1"],
        )
        assert refused.status_code == 401


def test_a_deletion_cut_short_completes_when_called_again(stack: Stack, video: bytes) -> None:
    study = new_study(stack)
    tokens = enrolled(stack, study, ["P7"])
    digest = contribute(stack, tokens["P7"], "P7", video)
    bytes_of_p7 = storage_ids_of(stack, study, "P7")

    media = stack.supervisor.processes["media"]
    media.terminate()
    media.wait(15)
    try:
        cut_short = withdraw(stack, study, "P7")
        assert cut_short.status_code == 503, cut_short.text
        assert "again" in cut_short.json()["detail"]["error"]
        # The telemetry went already; the vlog is still there.
        with MongoClient(stack.config.mongodb_uri) as mongo:
            database = mongo[stack.db_name]
            assert database["sentiments"].count_documents({"study_id": study}) == 0
            assert database["vlogs"].count_documents({"study_id": study}) == 1
    finally:
        stack.supervisor.start("media")
        stack.supervisor.wait_ready("media")

    completed = withdraw(stack, study, "P7")
    assert completed.status_code == 200, completed.text
    deleted = completed.json()["deletion_receipt"]["deleted"]
    # Counted before the first call deleted them.
    assert (deleted["sentiments"], deleted["gps_fixes"], deleted["vlogs"]) == (3, 2, 1)
    assert deleted["vlog_files"][0]["sha256"] == digest
    assert traces(stack, study, "P7", bytes_of_p7) == []


def test_a_closed_study_s_data_is_deleted_in_one_call(stack: Stack, video: bytes) -> None:
    study, kept_study = new_study(stack), new_study(stack)
    tokens = enrolled(stack, study, ["P1", "P2"])
    for user_id in ("P1", "P2"):
        contribute(stack, tokens[user_id], user_id, video)
    contribute(stack, enrolled(stack, kept_study, ["P1"])["P1"], "P1", video)
    bytes_of_study = storage_ids_of(stack, study, "P1") + storage_ids_of(stack, study, "P2")
    with stack.client("admin") as admin:
        still_open = admin.post(f"/api/studies/{study}/delete-data")
        assert still_open.status_code == 409, still_open.text
        assert admin.post(f"/api/studies/{study}/close").status_code == 200
        answer = admin.post(f"/api/studies/{study}/delete-data", timeout=120)
        assert answer.status_code == 200, answer.text
        receipt = answer.json()
        assert (receipt["study_id"], receipt["user_id"]) == (study, None)
        deleted = receipt["deleted"]
        assert (deleted["sentiments"], deleted["gps_fixes"], deleted["vlogs"]) == (6, 4, 2)
        assert admin.post("/api/deletion-receipts/verify", json=receipt).json()["valid"] is True
        kept = {"study_id": kept_study, "user_id": "P1"}
        assert admin.get("/api/sentiments/count", params=kept).json()["count"] == 3
        assert len(admin.get("/api/vlogs", params=kept).json()) == 1
    for user_id in ("P1", "P2"):
        assert traces(stack, study, user_id, bytes_of_study) == []
