"""The audit trail: every read of participant data and every change made with an admin
or viewer credential leaves exactly one entry, with who, what, how much and from
where; the entries form a hash chain whose verification names the first entry that
was changed or removed; entries still waiting to be stored when the gateway stops
are stored before it exits."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pymongo import MongoClient

from tests.conftest import Stack
from tests.media.conftest import opencv_video, upload
from tests.support import TOKENS, audit_read, wait_until

PARTICIPANT = f"P-audit-{uuid.uuid4().hex[:8]}"


def entries_of(stack: Stack, request_id: str, expected: int = 1) -> list[dict]:
    """The entries of one request, once the gateway has sent them (a batch every
    second)."""
    found: list[dict] = []

    def arrived() -> bool:
        nonlocal found
        with stack.client("admin") as admin:
            answer = admin.get("/api/audit", params={"request_id": request_id})
            assert answer.status_code == 200, answer.text
            found = answer.json()
        return len(found) >= expected

    wait_until(arrived, 15, f"the audit entry of {request_id}")
    everything_recorded_is_stored(stack)  # a second entry would be stored by now
    with stack.client("admin") as admin:
        return admin.get("/api/audit", params={"request_id": request_id}).json()


def everything_recorded_is_stored(stack: Stack) -> None:
    """Waits until every entry the gateway recorded so far is stored: one more audited
    read is made, and the gateway sends its entries in the order it recorded them, so
    once that read's entry is stored, so is every one before it."""
    marker = f"marker-{uuid.uuid4().hex}"
    with stack.client("admin") as admin:
        answer = admin.get("/api/sentiments/count", headers={"X-Request-ID": marker})
        assert answer.status_code == 200

        def stored() -> bool:
            return bool(admin.get("/api/audit", params={"request_id": marker}).json())

        wait_until(stored, 15, "the marker's audit entry")


@pytest.fixture(scope="module")
def data(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    records = [
        {"user_id": PARTICIPANT, "emotion": "calm", "intensity": 0.5, "timestamp": 1763000000 + i}
        for i in range(7)
    ]
    with stack.client("device") as device:
        stored = device.post("/api/sentiments/batch", json=records).json()
        assert stored["stored"] == 7
        device.post(
            "/api/gps/batch",
            json=[{"user_id": PARTICIPANT, "latitude": 25.0, "longitude": 121.5}],
        )
        video = opencv_video(tmp_path_factory.mktemp("audit") / "clip.mp4", "mp4v", 7)
        vlog = upload(device, PARTICIPANT, video)
        assert vlog.status_code == 201, vlog.text
    with stack.client("admin") as admin:
        minted = admin.post(
            "/api/viewer-tokens", json={"name": "TA Audit", "study_ids": ["default"]}
        )
        assert minted.status_code == 201, minted.text
    return {
        "sentiment_id": stored["results"][0]["id"],
        "vlog_id": vlog.json()["vlog"]["_id"],
        "ta": {"Authorization": f"Bearer {minted.json()['token']}"},
        "ta_token_id": minted.json()["token_id"],
    }


# Every route that reads participant data: (path, query, the records its answer holds,
# None when it is not a list of records).
READS = [
    ("/api/sentiments", {"user_id": PARTICIPANT}, 7),
    ("/api/sentiments/{sentiment_id}", {}, None),
    ("/api/sentiments/count", {"user_id": PARTICIPANT}, None),
    ("/api/sentiments/stream", {"user_id": PARTICIPANT}, 7),
    ("/api/gps", {"user_id": PARTICIPANT}, 1),
    ("/api/gps/count", {"user_id": PARTICIPANT}, None),
    ("/api/gps/stream", {"user_id": PARTICIPANT}, 1),
    ("/api/telemetry/summary", {"user_id": PARTICIPANT}, None),
    ("/api/telemetry/timeline", {"user_id": PARTICIPANT}, 1),
    ("/api/telemetry/activity", {"user_id": PARTICIPANT}, 1),
    ("/api/telemetry/participants", {"user_id": PARTICIPANT}, 1),
    (f"/api/telemetry/participants/{PARTICIPANT}", {}, None),
    ("/api/telemetry/compliance", {"user_id": PARTICIPANT}, 1),
    ("/api/telemetry/compliance.csv", {"user_id": PARTICIPANT}, 1),
    ("/api/telemetry/daily", {"user_id": PARTICIPANT}, 2),  # two days
    ("/api/vlogs", {"user_id": PARTICIPANT}, 1),
    ("/api/vlogs/count", {"user_id": PARTICIPANT}, None),
    ("/api/vlogs/activity", {"user_id": PARTICIPANT}, 1),
    ("/api/vlogs/participants", {"user_id": PARTICIPANT}, 1),
    ("/api/vlogs/{vlog_id}", {}, None),
    ("/api/vlogs/{vlog_id}/download", {}, None),
    ("/api/vlogs/{vlog_id}/play", {}, None),
    ("/api/vlogs/{vlog_id}/thumbnail", {}, None),
    ("/api/vlogs/download/{vlog_id}.mp4", {}, None),
    ("/api/studies/default/participants", {}, 0),  # nobody enrolled in `default`
    ("/export", {"user_id": PARTICIPANT}, None),
    ("/export/map", {"user_id": PARTICIPANT}, None),
    ("/api/export/sentiments.csv", {"user_id": PARTICIPANT}, 7),
    ("/api/export/sentiments.ndjson", {"user_id": PARTICIPANT}, 7),
    ("/api/export/gps.json", {"user_id": PARTICIPANT}, 1),
    ("/api/export/gps.parquet", {"user_id": PARTICIPANT}, None),
    ("/api/export/daily.csv", {"user_id": PARTICIPANT}, 2),
    ("/api/export/everything.zip", {"user_id": PARTICIPANT}, None),
    ("/api/export/all", {"user_id": PARTICIPANT}, None),
]


@pytest.fixture(scope="module")
def recorded(stack: Stack, data: dict) -> dict[str, tuple[httpx.Response, list[dict]]]:
    """Each read of READS made once by the TA, with the entries the trail holds for it
    once every batch has arrived: by route."""
    answers = {}
    with stack.client() as client:
        for route, query, _ in READS:
            request_id = f"audit-{uuid.uuid4().hex}"
            headers = {**data["ta"], "X-Request-ID": request_id}
            answers[route] = (
                request_id,
                client.get(route.format(**data), params=query, headers=headers),
            )
    entries: dict[str, list[dict]] = {}

    def all_arrived() -> bool:
        entries.clear()
        with stack.client("admin") as admin:
            params = {"credential_id": data["ta_token_id"], "limit": 1000}
            for entry in admin.get("/api/audit", params=params).json():
                entries.setdefault(entry["request_id"], []).append(entry)
        return all(request_id in entries for request_id, _ in answers.values())

    wait_until(all_arrived, 20, "an entry for every read")
    everything_recorded_is_stored(stack)  # a second entry of any read would be stored now
    all_arrived()
    return {route: (answer, entries[request_id]) for route, (request_id, answer) in answers.items()}


# Ids without the random participant, so every test worker collects the same tests.
@pytest.mark.parametrize(
    ("route", "query", "records"),
    READS,
    ids=[r[0].replace(PARTICIPANT, "{participant}") for r in READS],
)
def test_each_read_of_participant_data_leaves_one_entry(
    data: dict, recorded: dict, route: str, query: dict, records: int | None
) -> None:
    path = route.format(**data)
    answer, entries = recorded[route]
    assert answer.status_code == 200, answer.text
    (entry,) = entries
    assert entry["credential_id"] == data["ta_token_id"]
    assert entry["credential_name"] == "TA Audit"
    assert data["ta"]["Authorization"].split()[1] not in str(entry)  # never the secret
    assert entry["role"] == "viewer"
    assert entry["action"] == f"GET {path}"
    assert entry["status"] == 200
    assert entry["bytes"] == answer.num_bytes_downloaded
    assert entry["records"] == records
    assert entry["filters"] == query
    assert entry["client"] == "127.0.0.1"
    if query.get("user_id") or PARTICIPANT in path:
        assert entry["participants"] == [PARTICIPANT]
    assert entry["study_id"] == "default"


def test_changes_by_admin_are_recorded_and_phones_writes_are_not(stack: Stack) -> None:
    created_id, written_id = f"audit-{uuid.uuid4().hex}", f"audit-{uuid.uuid4().hex}"
    study_id = f"audited-{uuid.uuid4().hex[:8]}"
    with stack.client("admin") as admin:
        created = admin.post(
            "/api/studies",
            json={"study_id": study_id, "name": "Audited"},
            headers={"X-Request-ID": created_id},
        )
        assert created.status_code == 201, created.text
    with stack.client("device") as device:
        written = device.post(
            "/api/sentiments",
            json={"user_id": PARTICIPANT, "emotion": "sad", "intensity": 0.2},
            headers={"X-Request-ID": written_id},
        )
        assert written.status_code == 201, written.text
    (entry,) = entries_of(stack, created_id)
    assert (entry["credential_id"], entry["role"]) == ("env:admin", "admin")
    assert entry["action"] == "POST /api/studies"
    assert entry["status"] == 201
    with stack.client("admin") as admin:
        assert admin.get("/api/audit", params={"request_id": written_id}).json() == []


def test_the_trail_pages_and_downloads(stack: Stack, data: dict) -> None:
    def recorded_so_far(admin: httpx.Client) -> int:
        params = {"credential_id": data["ta_token_id"], "limit": 1000}
        return len(admin.get("/api/audit", params=params).json())

    with stack.client("admin") as admin:
        before = recorded_so_far(admin)
        with stack.client() as client:
            for _ in range(3):
                client.get("/api/gps", params={"user_id": PARTICIPANT}, headers=data["ta"])
        # Entries arrive a batch a second: wait for these three, not for any three.
        wait_until(lambda: recorded_so_far(admin) >= before + 3, 15, "three more entries")
        # And none still on its way.
        everything_recorded_is_stored(stack)
        every = admin.get(
            "/api/audit", params={"credential_id": data["ta_token_id"], "limit": 1000}
        ).json()
        walked, cursor = [], None
        while True:
            params = {"credential_id": data["ta_token_id"], "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = admin.get("/api/audit", params=params)
            walked += page.json()
            cursor = page.headers.get("X-Next-Cursor")
            if not cursor:
                break
        assert [e["seq"] for e in walked] == [e["seq"] for e in every]
        assert all(e["credential_id"] == data["ta_token_id"] for e in every)
        ndjson = admin.get(
            "/api/audit/download.ndjson", params={"credential_id": data["ta_token_id"]}
        )
        assert len(ndjson.text.splitlines()) >= len(every)
        as_csv = admin.get("/api/audit/download.csv", params={"user_id": PARTICIPANT})
        assert as_csv.text.splitlines()[0].startswith("seq,time,credential_id")
        assert admin.get("/api/audit", params={"cursor": "nonsense"}).status_code == 422
    with stack.client("viewer") as viewer:
        assert viewer.get("/api/audit").status_code == 403


def stored_entries(stack: Stack, wanted: Any) -> list[dict]:
    """The entries in the database itself that `wanted` picks."""
    with MongoClient(stack.config.mongodb_uri) as mongo:
        blocks = mongo[stack.db_name]["audit_trail"].find({})
        return [entry for block in blocks for entry in block["entries"] if wanted(entry)]


def verify_command(stack: Stack) -> subprocess.CompletedProcess[str]:
    env = {
        "MONGODB_URI": stack.config.mongodb_uri,
        "DB_NAME": stack.db_name,
        "EMOGO_ADMIN_TOKEN": stack.config.credentials.admin,
        "EMOGO_SERVICE_TOKEN": stack.config.service_token,
        "EMOGO_VIEWER_TOKEN": stack.config.credentials.viewer,
        "EMOGO_DEVICE_TOKEN": stack.config.credentials.device,
        "EMOGO_SECRET_KEY": stack.config.secret_key,
        "EMOGO_DATA_DIR": str(stack.config.data_dir),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.admin.research.audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_a_changed_or_removed_entry_breaks_the_chain_there(stack: Stack, data: dict) -> None:
    with stack.client() as client:
        for _ in range(3):
            client.get("/api/sentiments/count", params={"user_id": PARTICIPANT}, headers=data["ta"])
    with stack.client("admin") as admin:
        wait_until(lambda: admin.get("/api/audit/verify").json()["entries"] >= 3, 15, "entries")
        assert admin.get("/api/audit/verify").json()["ok"] is True
    assert verify_command(stack).returncode == 0
    with MongoClient(stack.config.mongodb_uri) as mongo:
        trail = mongo[stack.db_name]["audit_trail"]
        block = trail.find_one({"credential_ids": data["ta_token_id"]}, sort=[("_id", 1)])
        original = dict(block)
        position = next(
            n for n, e in enumerate(block["entries"]) if e["credential_id"] == data["ta_token_id"]
        )
        seq = block["entries"][position]["seq"]
        try:
            trail.update_one({"_id": block["_id"]}, {"$set": {f"entries.{position}.records": 999}})
            with stack.client("admin") as admin:
                check = admin.get("/api/audit/verify").json()
            assert (check["ok"], check["first_broken_seq"]) == (False, seq)
            assert "changed" in check["reason"]
            broken = verify_command(stack)
            assert broken.returncode == 1
            assert f"broken at entry {seq}" in broken.stdout

            # Removed: the chain has a gap there.
            entries = original["entries"]
            trail.update_one(
                {"_id": block["_id"]},
                {"$set": {"entries": entries[:position] + entries[position + 1 :]}},
            )
            with stack.client("admin") as admin:
                check = admin.get("/api/audit/verify").json()
            assert (check["ok"], check["first_broken_seq"]) == (False, seq)
            assert "missing" in check["reason"]
        finally:
            trail.replace_one({"_id": block["_id"]}, original)
        with stack.client("admin") as admin:
            assert admin.get("/api/audit/verify").json()["ok"] is True


def test_concurrent_batches_make_one_chain(stack: Stack) -> None:
    """Batches sent at once to the admin service (as several gateway workers do) are
    chained one after another: no entry lost, no fork."""
    import asyncio

    entry = msgspec.to_builtins(audit_read(""))
    marker = f"concurrent-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {stack.config.service_token}"}

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(base_url=stack.config.url("admin"), headers=headers) as c:
            answers = await asyncio.gather(
                *(
                    c.post(
                        "/api/audit/entries",
                        json={
                            "batch_id": f"{marker}-{n}",
                            "entries": [
                                {**entry, "request_id": f"{marker}-{n}-{i}"} for i in range(5)
                            ],
                        },
                    )
                    for n in range(8)
                )
            )
        return [a.status_code for a in answers]

    assert asyncio.run(send_all()) == [201] * 8
    # A batch sent again (its answer lost on the way) is stored once.
    assert asyncio.run(send_all()) == [201] * 8
    stored = stored_entries(stack, lambda entry: entry["request_id"].startswith(marker))
    assert len(stored) == 40
    with stack.client("admin") as admin:
        assert admin.get("/api/audit/verify").json()["ok"] is True


FORGED = {
    "batch_id": "forged",
    "entries": [
        {
            "time": "2026-11-30T10:00:00Z",
            "credential_id": "env:viewer",
            "credential_name": "TA vA",
            "role": "viewer",
            "action": "GET /api/export/all.zip",
            "status": 200,
            "bytes": 1,
            "request_id": "forged",
        }
    ],
}


def test_only_the_gateway_appends_to_the_trail(stack: Stack) -> None:
    """The admin token cannot write into the trail that records the admin: refused at
    the admin service (403), and the path is not reachable through the gateway (404)."""
    admin_token = {"Authorization": f"Bearer {TOKENS['admin']}"}
    direct = httpx.post(
        f"{stack.config.url('admin')}/api/audit/entries", json=FORGED, headers=admin_token
    )
    assert direct.status_code == 403, direct.text
    for spelling in ("/api/audit/entries", "/api/audit/entries/", "/api/audit/%65ntries"):
        with stack.client("admin") as admin:
            answer = admin.post(spelling, json=FORGED)
        assert answer.status_code == 404, (spelling, answer.text)
    service = {"Authorization": f"Bearer {stack.config.service_token}"}
    through = httpx.post(f"{stack.gateway}/api/audit/entries", json=FORGED, headers=service)
    assert through.status_code == 404
    assert stored_entries(stack, lambda entry: entry["request_id"] == "forged") == []


def test_a_request_cannot_make_its_entry_unstorable(stack: Stack, data: dict) -> None:
    """A NUL (or a dot, or a leading dollar) in a query parameter's name once made the
    admin service refuse the whole batch, which the gateway sent again forever: nothing
    later was stored. Now the names are escaped when the entry is made."""
    marker = uuid.uuid4().hex
    with stack.client() as client:
        hostile = client.get(
            f"/api/sentiments/count?probe%00x=1&a.b=2&%24where=3&m={marker}",
            headers={**data["ta"], "X-Request-ID": f"hostile-{marker}"},
        )
        later = client.get(
            "/api/sentiments/count",
            params={"user_id": PARTICIPANT},
            headers={**data["ta"], "X-Request-ID": f"later-{marker}"},
        )
    assert hostile.status_code in (200, 422)
    assert later.status_code == 200
    (entry,) = entries_of(stack, f"hostile-{marker}")
    assert entry["filters"]["probe%00x"] == "1"
    assert entry["filters"]["a%2Eb"] == "2"
    assert entry["filters"]["%24where"] == "3"
    entries_of(stack, f"later-{marker}")
    with stack.client("admin") as admin:
        assert admin.get("/api/audit/verify").json()["ok"] is True


def test_reads_of_receipts_and_logs_are_recorded(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    with stack.client("admin") as admin:
        for n, path in enumerate(("/tail_log/3", f"/api/deletion-receipts/{marker}")):
            answer = admin.get(path, headers={"X-Request-ID": f"log-{n}-{marker}"})
            assert answer.status_code in (200, 404), (path, answer.text)
            (entry,) = entries_of(stack, f"log-{n}-{marker}")
            assert entry["action"] == f"GET {path}"
            assert entry["credential_id"] == "env:admin"


def test_an_edited_index_or_an_added_field_breaks_verification(stack: Stack, data: dict) -> None:
    with stack.client() as client:
        client.get("/api/sentiments/count", params={"user_id": PARTICIPANT}, headers=data["ta"])
    with stack.client("admin") as admin:
        wait_until(lambda: admin.get("/api/audit/verify").json()["entries"] >= 1, 15, "entries")
    with MongoClient(stack.config.mongodb_uri) as mongo:
        trail = mongo[stack.db_name]["audit_trail"]
        block = trail.find_one({"participants": PARTICIPANT}, sort=[("_id", -1)])
        original = dict(block)
        edits = [
            {"$pull": {"participants": PARTICIPANT}},
            {"$set": {"note": "added later"}},
            {"$set": {"entries.0.note": "added later"}},
        ]
        try:
            for edit in edits:
                trail.update_one({"_id": block["_id"]}, edit)
                with stack.client("admin") as admin:
                    check = admin.get("/api/audit/verify").json()
                assert check["ok"] is False, edit
                assert check["first_broken_seq"] == block["_id"], check
                trail.replace_one({"_id": block["_id"]}, original)
        finally:
            trail.replace_one({"_id": block["_id"]}, original)
        with stack.client("admin") as admin:
            assert admin.get("/api/audit/verify").json()["ok"] is True


def test_a_client_does_not_choose_its_own_address(stack: Stack, data: dict) -> None:
    """X-Forwarded-For from a client that is no configured proxy (EMOGO_TRUSTED_PROXIES
    is empty by default), a local one included, changes nothing: the trail records the
    address the connection came from."""
    request_id = f"forged-address-{uuid.uuid4().hex}"
    with stack.client() as client:
        answer = client.get(
            "/api/sentiments/count",
            headers={**data["ta"], "X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.9"},
        )
    assert answer.status_code == 200
    (entry,) = entries_of(stack, request_id)
    assert entry["client"] == "127.0.0.1"
