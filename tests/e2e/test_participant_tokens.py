"""Participant tokens through the gateway, in every service: a participant writes and
reads only their own data (sentiments, GPS fixes, vlogs), impersonation is refused
with nothing stored, re-issuing a code or withdrawing takes effect within a second
(services notice revocations), closing the study within the cache bound (5 s)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from services.common.research.tokens import REVOCATION_BOUND_SECONDS
from tests.conftest import Stack
from tests.media.conftest import h264_video, noise_video

CACHE_BOUND_SECONDS = 5.0
# What a revocation may take, and the requests under way: one request's slack.
REVOKED_WITHIN_SECONDS = REVOCATION_BOUND_SECONDS + 1


@dataclass
class Enrolled:
    study_id: str
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def enrol_two(stack: Stack) -> tuple[Enrolled, Enrolled]:
    tag = uuid.uuid4().hex[:10]
    study_id = f"tokens-{tag}"
    # Ids of their own: the session's other tests write as P001 and the like.
    user_ids = [f"alice-{tag}", f"bob-{tag}"]
    with stack.client("admin") as admin, stack.client() as phone:
        assert admin.post("/api/studies", json={"study_id": study_id, "name": "T"}).is_success
        issued = admin.post(
            f"/api/studies/{study_id}/participants", json={"user_ids": user_ids}
        ).json()
        enrolled = []
        for participant in issued["participants"]:
            answer = phone.post(
                "/api/enrol", json={"study_id": study_id, "code": participant["code"]}
            ).json()
            enrolled.append(Enrolled(study_id, answer["user_id"], answer["token"]))
    return enrolled[0], enrolled[1]


@pytest.fixture(scope="module")
def pair(stack: Stack) -> tuple[Enrolled, Enrolled]:
    return enrol_two(stack)


@pytest.fixture
def alice(stack: Stack, pair: tuple[Enrolled, Enrolled]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway, headers=pair[0].headers, timeout=60) as client:
        yield client


def stored_count(stack: Stack, collection: str, user_id: str) -> int:
    with MongoClient(stack.config.mongodb_uri) as client:
        return client[stack.db_name][collection].count_documents({"user_id": user_id})


def sentiment(**fields: object) -> dict:
    return {"emotion": "happy", "intensity": 0.5, **fields}


def test_a_participant_writes_as_themselves_only(
    stack: Stack, pair: tuple[Enrolled, Enrolled], alice: httpx.Client
) -> None:
    me, other = pair
    own = alice.post("/api/sentiments", json=sentiment())
    assert own.status_code == 201
    assert own.json()["record"]["user_id"] == me.user_id
    named = alice.post("/api/sentiments", json=sentiment(user_id=me.user_id))
    assert named.status_code == 201
    fix = alice.post("/api/gps", json={"latitude": 25.03, "longitude": 121.56})
    assert fix.status_code == 201
    assert fix.json()["record"]["user_id"] == me.user_id

    before = stored_count(stack, "sentiments", other.user_id)
    for route, body in (
        ("/api/sentiments", sentiment(user_id=other.user_id)),
        ("/api/gps", {"user_id": other.user_id, "latitude": 1.0, "longitude": 2.0}),
    ):
        refused = alice.post(route, json=body)
        assert refused.status_code == 403
        assert refused.json()["detail"]["field"] == "user_id"
        assert other.user_id in refused.json()["detail"]["error"]
    assert stored_count(stack, "sentiments", other.user_id) == before
    assert stored_count(stack, "gps", other.user_id) == 0


def test_a_batch_with_a_foreign_row_stores_nothing(
    stack: Stack, pair: tuple[Enrolled, Enrolled], alice: httpx.Client
) -> None:
    me, other = pair
    before = stored_count(stack, "sentiments", me.user_id)
    batch = [sentiment(), sentiment(user_id=me.user_id), sentiment(user_id=other.user_id)]
    refused = alice.post("/api/sentiments/batch", json=batch)
    assert refused.status_code == 403
    assert refused.json()["detail"]["rows"] == [2]
    assert stored_count(stack, "sentiments", me.user_id) == before
    accepted = alice.post("/api/sentiments/batch", json=batch[:2])
    assert accepted.status_code == 200
    assert accepted.json()["stored"] == 2
    assert stored_count(stack, "sentiments", me.user_id) == before + 2


def test_a_participant_uploads_their_own_vlogs_only(
    stack: Stack, pair: tuple[Enrolled, Enrolled], alice: httpx.Client, tmp_path: Path
) -> None:
    me, other = pair
    small = h264_video(tmp_path / "small.mp4", 11)
    big = noise_video(tmp_path / "big.mp4")
    assert len(big) > 1024 * 1024
    files = {"video": ("clip.mp4", small, "video/mp4")}
    refused = alice.post("/api/vlogs/upload", data={"user_id": other.user_id}, files=files)
    assert refused.status_code == 403
    raw_refused = alice.post(
        "/api/vlogs/upload/raw", params={"user_id": other.user_id}, content=small
    )
    assert raw_refused.status_code == 403
    assert stored_count(stack, "vlogs", other.user_id) == 0

    uploaded = alice.post("/api/vlogs/upload", data={"title": "mine"}, files=files)
    assert uploaded.status_code == 201
    assert uploaded.json()["vlog"]["user_id"] == me.user_id
    # A video larger than the gateway buffers streams through with the participant's
    # token, and the query names nobody.
    streamed = alice.post(
        "/api/vlogs/upload/raw",
        params={"filename": "big.mp4"},
        content=big,
        headers={"Content-Type": "video/mp4"},
    )
    assert streamed.status_code == 201, streamed.text
    assert streamed.json()["vlog"]["user_id"] == me.user_id
    assert stored_count(stack, "vlogs", me.user_id) == 2


def test_a_participant_reads_back_their_own_data_and_nothing_else(
    stack: Stack, pair: tuple[Enrolled, Enrolled], alice: httpx.Client, tmp_path: Path
) -> None:
    me, other = pair
    with httpx.Client(base_url=stack.gateway, headers=other.headers, timeout=60) as bob:
        theirs = bob.post("/api/sentiments", json=sentiment()).json()["id"]
        their_vlog = bob.post(
            "/api/vlogs/upload",
            files={"video": ("b.mp4", h264_video(tmp_path / "b.mp4", 12), "video/mp4")},
        ).json()["vlog"]["_id"]
    mine = alice.post("/api/sentiments", json=sentiment()).json()["id"]

    listed = alice.get("/api/sentiments", params={"limit": 1000})
    assert listed.status_code == 200
    assert listed.json()
    assert {r["user_id"] for r in listed.json()} == {me.user_id}
    assert mine in {r["_id"] for r in listed.json()}
    assert alice.get("/api/sentiments", params={"user_id": other.user_id}).status_code == 403
    assert alice.get(f"/api/sentiments/{mine}").status_code == 200
    assert alice.get(f"/api/sentiments/{theirs}").status_code == 404
    count = alice.get("/api/sentiments/count").json()["count"]
    assert count == stored_count(stack, "sentiments", me.user_id)
    streamed = alice.get("/api/sentiments/stream").text.splitlines()
    assert len(streamed) == count
    assert all(me.user_id in line for line in streamed)

    vlogs = alice.get("/api/vlogs").json()
    assert {v["user_id"] for v in vlogs} == {me.user_id}
    assert alice.get(f"/api/vlogs/{their_vlog}").status_code == 404
    assert alice.get(f"/api/vlogs/{their_vlog}/download").status_code == 404
    assert alice.get(f"/api/vlogs/{their_vlog}/thumbnail").status_code == 404
    renamed = alice.patch(f"/api/vlogs/{their_vlog}", json={"title": "taken over"})
    assert renamed.status_code == 404
    own_vlog = vlogs[0]["_id"]
    assert alice.get(f"/api/vlogs/{own_vlog}/download").status_code == 200

    # Views across participants, exports and deletions are not a participant's.
    for path in (
        "/api/telemetry/summary",
        "/api/telemetry/participants",
        "/api/vlogs/participants",
    ):
        assert alice.get(path).status_code == 403, path
    assert alice.delete(f"/api/vlogs/{own_vlog}").status_code == 403
    assert alice.get("/api/export/sentiments.csv").status_code == 403
    assert alice.get("/export").status_code == 403
    assert alice.get("/api/v1/list_users").status_code in (401, 403)
    assert alice.get("/api/studies").status_code in (401, 403)


def wait_for_status(client: httpx.Client, send: object, status: int) -> float:
    """Seconds until `send(client)` answers `status` (at most twice the cache bound)."""
    started = time.monotonic()
    while time.monotonic() - started < 2 * CACHE_BOUND_SECONDS:
        if send(client).status_code == status:  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"still not {status} after {2 * CACHE_BOUND_SECONDS} s")


def test_a_reissued_code_stops_the_old_token_in_every_service(stack: Stack) -> None:
    me, _ = enrol_two(stack)
    with httpx.Client(base_url=stack.gateway, headers=me.headers, timeout=30) as phone:
        assert phone.post("/api/sentiments", json=sentiment()).status_code == 201
        assert phone.get("/api/vlogs").status_code == 200
        with stack.client("admin") as admin:
            route = f"/api/studies/{me.study_id}/participants/{me.user_id}/code"
            assert admin.post(route).status_code == 200
        took = [
            wait_for_status(phone, lambda c: c.post("/api/sentiments", json=sentiment()), 401),
            wait_for_status(phone, lambda c: c.get("/api/vlogs"), 401),
        ]
    assert max(took) <= REVOKED_WITHIN_SECONDS


def test_a_withdrawn_participant_is_shut_out_at_once(stack: Stack) -> None:
    """Withdrawal stops the token in every service within a second, voids a pending
    code, cannot be undone by a new code, and keeps what was sent."""
    me, unenrolled = enrol_two(stack)
    with stack.client("admin") as admin:
        # The second participant's code is re-issued but never exchanged.
        code_route = f"/api/studies/{me.study_id}/participants/{unenrolled.user_id}/code"
        pending_code = admin.post(code_route).json()["code"]
    with httpx.Client(base_url=stack.gateway, headers=me.headers, timeout=30) as phone:
        stored = phone.post("/api/sentiments", json=sentiment())
        assert stored.status_code == 201
        with stack.client("admin") as admin:
            base = f"/api/studies/{me.study_id}/participants"
            withdrawn = admin.post(f"{base}/{me.user_id}/withdraw")
            assert withdrawn.status_code == 200
            view = withdrawn.json()
            assert view["status"] == "withdrawn"
            assert view["has_token"] is False
            assert view["withdrawn_at"] is not None
            again = admin.post(f"{base}/{me.user_id}/withdraw").json()
            assert again["withdrawn_at"] == view["withdrawn_at"]
            assert admin.post(f"{base}/{unenrolled.user_id}/withdraw").status_code == 200
            assert admin.post(f"{base}/{me.user_id}/code").status_code == 404
            assert admin.post(f"{base}/nobody-here/withdraw").status_code == 404
            listed = {p["user_id"]: p for p in admin.get(base).json()}
            assert listed[me.user_id]["status"] == "withdrawn"
            assert listed[unenrolled.user_id]["code"] == "none"
            # What they sent stays until it is deleted.
            assert admin.get(f"/api/sentiments/{stored.json()['id']}").status_code == 200
        took = [
            wait_for_status(phone, lambda c: c.post("/api/sentiments", json=sentiment()), 401),
            wait_for_status(phone, lambda c: c.get("/api/sentiments"), 401),
            wait_for_status(phone, lambda c: c.get("/api/vlogs"), 401),
        ]
    assert max(took) <= REVOKED_WITHIN_SECONDS
    with stack.client() as stranger:
        exchange = {"study_id": me.study_id, "code": pending_code}
        voided = stranger.post("/api/enrol", json=exchange)
        assert voided.status_code == 422
        assert voided.json()["detail"]["errors"][0]["field"] == "code"


def test_a_closed_study_takes_no_new_data_but_is_still_read(stack: Stack) -> None:
    me, _ = enrol_two(stack)
    with httpx.Client(base_url=stack.gateway, headers=me.headers, timeout=30) as phone:
        assert phone.post("/api/sentiments", json=sentiment()).status_code == 201
        with stack.client("admin") as admin:
            assert admin.post(f"/api/studies/{me.study_id}/close").status_code == 200
        wait_for_status(phone, lambda c: c.post("/api/sentiments", json=sentiment()), 403)
        refused = phone.post("/api/gps", json={"latitude": 1.0, "longitude": 2.0})
        assert refused.status_code == 403
        assert "closed" in refused.json()["detail"]["error"]
        refused_upload = phone.post(
            "/api/vlogs/upload/raw", content=b"\x00" * 64, headers={"Content-Type": "video/mp4"}
        )
        assert refused_upload.status_code == 403
        # Writes before the closing reached this service's cache were stored; they
        # all stay readable.
        listed = phone.get("/api/sentiments", params={"limit": 1000})
        assert listed.status_code == 200
        assert {r["user_id"] for r in listed.json()} == {me.user_id}
        assert len(listed.json()) == stored_count(stack, "sentiments", me.user_id)
    with stack.client("viewer") as viewer:
        exported = viewer.get("/api/export/sentiments.csv", params={"user_id": me.user_id})
        assert exported.status_code == 200
        assert me.user_id in exported.text


def test_token_use_is_noted_and_the_token_never_stored(
    stack: Stack, pair: tuple[Enrolled, Enrolled], alice: httpx.Client
) -> None:
    me, _ = pair
    assert alice.get("/api/sentiments/count").status_code == 200
    with MongoClient(stack.config.mongodb_uri) as client:
        tokens = client[stack.db_name]["access_tokens"]
        deadline = time.monotonic() + 10
        document = tokens.find_one({"user_id": me.user_id, "study_ids": me.study_id})
        while document["last_used_at"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
            document = tokens.find_one({"_id": document["_id"]})
    assert document["last_used_at"] is not None
    assert me.token not in str(document)
    log_text = "".join(p.read_text() for p in (stack.config.data_dir / "logs").glob("*.log"))
    assert me.token not in log_text


def enrol_twins(stack: Stack, twin: str) -> list[dict[str, str]]:
    """The same participant id enrolled in two new studies: each one's token header."""
    tokens = []
    with stack.client("admin") as admin, stack.client() as phone:
        for _ in range(2):
            study_id = f"twins-{uuid.uuid4().hex[:8]}"
            admin.post("/api/studies", json={"study_id": study_id, "name": "Twins"})
            [issued] = admin.post(
                f"/api/studies/{study_id}/participants", json={"user_ids": [twin]}
            ).json()["participants"]
            answer = phone.post("/api/enrol", json={"study_id": study_id, "code": issued["code"]})
            tokens.append({"Authorization": f"Bearer {answer.json()['token']}"})
    return tokens


def test_the_same_participant_id_in_two_studies_is_two_people(stack: Stack) -> None:
    """Participant ids are unique within a study only: a token reads its own study's
    records, not those of a namesake in another study or in `default`."""
    twin = f"twin-{uuid.uuid4().hex[:8]}"
    tokens = enrol_twins(stack, twin)
    with stack.client("device") as device:
        namesake = device.post("/api/sentiments", json=sentiment(user_id=twin)).json()["id"]
    with (
        httpx.Client(base_url=stack.gateway, headers=tokens[0], timeout=30) as first,
        httpx.Client(base_url=stack.gateway, headers=tokens[1], timeout=30) as second,
    ):
        mine = first.post("/api/sentiments", json=sentiment(note="first")).json()["id"]
        theirs = second.post("/api/sentiments", json=sentiment(note="second")).json()["id"]
        assert [r["_id"] for r in first.get("/api/sentiments").json()] == [mine]
        assert first.get("/api/sentiments/count").json()["count"] == 1
        assert first.get(f"/api/sentiments/{theirs}").status_code == 404
        assert first.get(f"/api/sentiments/{namesake}").status_code == 404
        assert [r["_id"] for r in second.get("/api/sentiments").json()] == [theirs]
        assert len(first.get("/api/sentiments/stream").text.splitlines()) == 1
    with stack.client("viewer") as viewer:
        everyone = viewer.get("/api/sentiments", params={"user_id": twin}).json()
        assert {r["_id"] for r in everyone} == {mine, theirs, namesake}


def test_twins_keep_their_own_client_ids_and_videos(stack: Stack, tmp_path: Path) -> None:
    """Generated ids start at P001 in every study, so two studies' phones often send the
    same participant id and client ids: each is stored for its own person, and a resend
    is recognised within its own study only."""
    twin = f"twin-{uuid.uuid4().hex[:8]}"
    tokens = enrol_twins(stack, twin)
    record = sentiment(client_id="entry-1")
    video = {"video": ("clip.mp4", h264_video(tmp_path / "twin.mp4", 5), "video/mp4")}
    with stack.client("device") as device:
        namesake = device.post("/api/sentiments", json={**record, "user_id": twin})
        assert namesake.status_code == 201
    ids, vlogs = [], []
    for headers in tokens:
        with httpx.Client(base_url=stack.gateway, headers=headers, timeout=60) as phone:
            stored = phone.post("/api/sentiments", json=record)
            assert stored.status_code == 201, stored.text
            ids.append(stored.json()["id"])
            uploaded = phone.post("/api/vlogs/upload", files=video)
            assert uploaded.status_code == 201, uploaded.text
            vlogs.append(uploaded.json()["vlog"]["_id"])
    assert len({namesake.json()["id"], *ids}) == 3
    assert len(set(vlogs)) == 2
    with httpx.Client(base_url=stack.gateway, headers=tokens[0], timeout=60) as first:
        again = first.post("/api/sentiments", json={**record, "intensity": 0.9})
        assert again.status_code == 409
        assert again.json()["detail"]["id"] == ids[0]
        batch = first.post("/api/sentiments/batch", json=[record]).json()
        assert batch["results"][0] == {"index": 0, "status": "duplicate", "id": ids[0]}
        resent = first.post("/api/vlogs/upload", files=video)
        assert resent.status_code == 200
        assert resent.json()["vlog"]["_id"] == vlogs[0]
