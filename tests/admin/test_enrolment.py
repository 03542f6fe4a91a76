"""Enrolment through the gateway: the admin adds participants to a study and gets
their one-time codes (text and QR); a phone trades a code for its own token; codes
work once, expire, can be re-issued (which revokes the token); guessing is limited.
And viewer tokens scoped to studies, minted, listed and revoked by the admin."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import cv2
import httpx
import numpy as np
from pymongo import MongoClient

from tests.conftest import Stack, stack_of_its_own

CODE_SHAPE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")


def new_study(admin: httpx.Client, **fields: str) -> str:
    study_id = f"study-{uuid.uuid4().hex[:10]}"
    created = admin.post("/api/studies", json={"study_id": study_id, "name": "A", **fields})
    assert created.status_code == 201
    return study_id


def enrol(admin: httpx.Client, study_id: str, **body: object) -> list[dict]:
    response = admin.post(f"/api/studies/{study_id}/participants", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["study_id"] == study_id
    return response.json()["participants"]


def exchange(client: httpx.Client, study_id: str, code: str) -> httpx.Response:
    return client.post("/api/enrol", json={"study_id": study_id, "code": code})


def stored(stack: Stack, collection: str, query: dict) -> dict | None:
    with MongoClient(stack.config.mongodb_uri, tz_aware=True) as client:
        return client[stack.db_name][collection].find_one(query)


def decoded_qr(data_uri: str) -> str:
    assert data_uri.startswith("data:image/png;base64,")
    png = np.frombuffer(base64.b64decode(data_uri.split(",", 1)[1]), dtype=np.uint8)
    image = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
    # OpenCV's ArUco-based detector: the classic one misread about 4 % of these codes.
    text, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(image)
    return text


def test_a_participant_enrols_with_the_code_from_the_qr(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    study_id = new_study(admin)
    [issued] = enrol(admin, study_id, user_ids=["S-001"])
    assert issued["user_id"] == "S-001"
    assert CODE_SHAPE.match(issued["code"])
    expires = datetime.fromisoformat(issued["code_expires_at"])
    assert timedelta(days=6.9) < expires - datetime.now(UTC) <= timedelta(days=7)
    # The QR code a phone scans holds the study and the code.
    scanned = decoded_qr(issued["qr_png"])
    assert scanned == issued["enrol_uri"]
    link = parse_qs(urlparse(scanned).query)
    assert link == {"study": [study_id], "code": [issued["code"]]}
    assert issued["qr_svg"].startswith("<svg")

    enrolled = exchange(anonymous, link["study"][0], link["code"][0])
    assert enrolled.status_code == 201
    body = enrolled.json()
    assert body["user_id"] == "S-001"
    assert body["study_id"] == study_id
    assert body["token_type"] == "Bearer"
    assert body["token"].startswith("emp_")
    assert len(body["token"]) > 40

    listed = admin.get(f"/api/studies/{study_id}/participants")
    assert listed.status_code == 200
    [row] = listed.json()
    assert row["user_id"] == "S-001"
    assert row["code"] == "used"
    assert row["has_token"] is True
    assert row["enrolled_at"] is not None
    assert issued["code"] not in listed.text
    assert body["token"] not in listed.text


def test_typed_codes_are_forgiving_and_work_once(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    study_id = new_study(admin)
    [issued] = enrol(admin, study_id, user_ids=["typed"])
    # Lower case, spaces instead of the dash, O typed for 0, I and L for 1.
    typed = issued["code"].lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert exchange(anonymous, study_id, typed).status_code == 201
    again = exchange(anonymous, study_id, issued["code"])
    assert again.status_code == 422
    [error] = again.json()["detail"]["errors"]
    assert error["field"] == "code"
    assert "used" in error["reason"]


def test_wrong_codes_and_studies_are_refused(admin: httpx.Client, anonymous: httpx.Client) -> None:
    study_id = new_study(admin)
    other = new_study(admin)
    [issued] = enrol(admin, study_id, user_ids=["wrong"])
    wrong = exchange(anonymous, study_id, "ABCDE-FGHJK")
    assert wrong.status_code == 422
    assert wrong.json()["detail"]["errors"][0]["field"] == "code"
    # A code is valid in its own study only.
    assert exchange(anonymous, other, issued["code"]).status_code == 422
    assert exchange(anonymous, "no-such-study", issued["code"]).status_code == 404
    bad = anonymous.post("/api/enrol", json={"study_id": "Not A Slug", "code": "x"})
    assert bad.status_code == 422
    assert exchange(anonymous, study_id, issued["code"]).status_code == 201


def test_codes_are_stored_only_as_keyed_hashes_and_expire(
    stack: Stack, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    study_id = new_study(admin)
    [issued] = enrol(admin, study_id, user_ids=["late"])
    document = stored(stack, "participants", {"study_id": study_id, "user_id": "late"})
    assert document is not None
    plain = issued["code"].replace("-", "")
    assert plain not in str(document)
    assert issued["code"] not in str(document)
    assert len(document["code_digest"]) == 64
    with MongoClient(stack.config.mongodb_uri) as client:
        client[stack.db_name]["participants"].update_one(
            {"_id": document["_id"]},
            {"$set": {"code_expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
        )
    expired = exchange(anonymous, study_id, issued["code"])
    assert expired.status_code == 422
    assert "expired" in expired.json()["detail"]["errors"][0]["reason"]
    [row] = admin.get(f"/api/studies/{study_id}/participants").json()
    assert row["code"] == "expired"


def test_a_reissued_code_revokes_the_token_and_voids_the_old_code(
    stack: Stack, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    study_id = new_study(admin)
    [first] = enrol(admin, study_id, user_ids=["lost-phone"])
    old = exchange(anonymous, study_id, first["code"]).json()
    reissued = admin.post(f"/api/studies/{study_id}/participants/lost-phone/code")
    assert reissued.status_code == 200
    second = reissued.json()
    assert second["code"] != first["code"]
    assert decoded_qr(second["qr_png"]) == second["enrol_uri"]
    revoked = stored(stack, "access_tokens", {"token_id": old["token_id"]})
    assert revoked is not None
    assert revoked["revoked_at"] is not None
    [row] = admin.get(f"/api/studies/{study_id}/participants").json()
    assert row["code"] == "pending"
    assert row["has_token"] is False
    assert exchange(anonymous, study_id, first["code"]).status_code == 422
    new = exchange(anonymous, study_id, second["code"])
    assert new.status_code == 201
    assert new.json()["token"] != old["token"]
    assert (
        stored(stack, "access_tokens", {"token_id": new.json()["token_id"]})["revoked_at"] is None
    )
    missing = admin.post(f"/api/studies/{study_id}/participants/nobody/code")
    assert missing.status_code == 404


def test_tokens_are_stored_only_as_hashes(
    stack: Stack, admin: httpx.Client, anonymous: httpx.Client
) -> None:
    study_id = new_study(admin)
    [issued] = enrol(admin, study_id, user_ids=["hashed"])
    token = exchange(anonymous, study_id, issued["code"]).json()
    document = stored(stack, "access_tokens", {"token_id": token["token_id"]})
    assert document is not None
    assert token["token"] not in str(document)
    assert document["kind"] == "participant"
    assert document["study_ids"] == [study_id]
    assert document["user_id"] == "hashed"


def test_generated_ids_continue_the_study_numbering(admin: httpx.Client) -> None:
    study_id = new_study(admin)
    first = enrol(admin, study_id, count=3)
    assert [p["user_id"] for p in first] == ["P001", "P002", "P003"]
    assert len({p["code"] for p in first}) == 3
    more = enrol(admin, study_id, count=2)
    assert [p["user_id"] for p in more] == ["P004", "P005"]
    # Each study numbers its own participants.
    assert [p["user_id"] for p in enrol(admin, new_study(admin), count=1)] == ["P001"]


def test_bad_enrolments_change_nothing(admin: httpx.Client) -> None:
    study_id = new_study(admin)
    enrol(admin, study_id, user_ids=["A1"])
    route = f"/api/studies/{study_id}/participants"
    taken = admin.post(route, json={"user_ids": ["B1", "A1"]})
    assert taken.status_code == 409
    assert "A1" in taken.json()["detail"]["error"]
    both = admin.post(route, json={"user_ids": ["C1"], "count": 2})
    assert both.status_code == 422
    neither = admin.post(route, json={})
    assert neither.status_code == 422
    twice = admin.post(route, json={"user_ids": ["D1", "D1"]})
    assert twice.status_code == 422
    assert twice.json()["detail"]["errors"][0]["field"] == "user_ids"
    bad_id = admin.post(route, json={"user_ids": ["$ne"]})
    assert bad_id.status_code == 422
    too_many = admin.post(route, json={"count": 501})
    assert too_many.status_code == 422
    assert [p["user_id"] for p in admin.get(route).json()] == ["A1"]
    assert (
        admin.post("/api/studies/no-such-study/participants", json={"count": 1}).status_code == 404
    )


def test_a_closed_study_enrols_nobody(admin: httpx.Client, anonymous: httpx.Client) -> None:
    study_id = new_study(admin)
    [issued] = enrol(admin, study_id, user_ids=["before"])
    admin.post(f"/api/studies/{study_id}/close")
    refused = admin.post(f"/api/studies/{study_id}/participants", json={"count": 1})
    assert refused.status_code == 403
    assert "closed" in refused.json()["detail"]["error"]
    late = exchange(anonymous, study_id, issued["code"])
    assert late.status_code == 403
    assert "closed" in late.json()["detail"]["error"]


def test_only_the_admin_enrols_and_mints(
    admin: httpx.Client, viewer: httpx.Client, device: httpx.Client, anonymous: httpx.Client
) -> None:
    study_id = new_study(admin)
    # Readers may list who is enrolled (the compliance report names those who never
    # sent anything); never the codes.
    listed = viewer.get(f"/api/studies/{study_id}/participants")
    assert listed.status_code == 200
    for client, status in ((viewer, 403), (device, 403), (anonymous, 401)):
        route = f"/api/studies/{study_id}/participants"
        assert client.post(route, json={"count": 1}).status_code == status
        if client is not viewer:
            assert client.get(route).status_code == status
        assert client.post(f"{route}/P001/code").status_code == status
        minted = client.post("/api/viewer-tokens", json={"name": "x", "study_ids": [study_id]})
        assert minted.status_code == status
        assert client.get("/api/viewer-tokens").status_code == status
        assert client.delete("/api/viewer-tokens/tok_0000").status_code == status


def test_viewer_tokens_are_minted_listed_and_revoked(stack: Stack, admin: httpx.Client) -> None:
    first, second = new_study(admin), new_study(admin)
    minted = admin.post(
        "/api/viewer-tokens", json={"name": "TA Alice", "study_ids": [first, second, first]}
    )
    assert minted.status_code == 201
    body = minted.json()
    assert body["token"].startswith("emv_")
    assert body["name"] == "TA Alice"
    assert body["study_ids"] == [first, second]
    assert body["revoked_at"] is None
    assert body["last_used_at"] is None
    listed = admin.get("/api/viewer-tokens")
    assert listed.status_code == 200
    mine = [t for t in listed.json() if t["token_id"] == body["token_id"]]
    assert mine == [{k: v for k, v in body.items() if k != "token"}]
    assert body["token"] not in listed.text
    document = stored(stack, "access_tokens", {"token_id": body["token_id"]})
    assert body["token"] not in str(document)

    revoked = admin.delete(f"/api/viewer-tokens/{body['token_id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    again = admin.delete(f"/api/viewer-tokens/{body['token_id']}")
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert admin.delete("/api/viewer-tokens/tok_unknown").status_code == 404


def test_viewer_tokens_name_existing_studies(admin: httpx.Client) -> None:
    unknown = admin.post(
        "/api/viewer-tokens", json={"name": "TA Bob", "study_ids": ["no-such-study"]}
    )
    assert unknown.status_code == 422
    [error] = unknown.json()["detail"]["errors"]
    assert error["field"] == "study_ids"
    assert "no-such-study" in error["reason"]
    empty = admin.post("/api/viewer-tokens", json={"name": "TA Bob", "study_ids": []})
    assert empty.status_code == 422


limited_stack = stack_of_its_own(
    "emogo_enrolment_limits",
    EMOGO_ENROLMENT_ATTEMPTS_PER_ADDRESS="6",
    EMOGO_ENROLMENT_ATTEMPTS_PER_STUDY="3",
    # The test stands in for a reverse proxy: its X-Forwarded-For names the phone.
    EMOGO_TRUSTED_PROXIES="127.0.0.1",
)


def exchange_from(client: httpx.Client, address: str, study_id: str, code: str) -> httpx.Response:
    return client.post(
        "/api/enrol",
        json={"study_id": study_id, "code": code},
        headers={"X-Forwarded-For": address},
    )


def test_guessing_is_held_back_without_locking_out_the_class(limited_stack: Stack) -> None:
    """Wrong codes from a few addresses once locked a whole study for a minute, a valid
    code included. Now a study that gets more wrong codes than its budget (3 a minute)
    holds back only the addresses that guessed; a phone with its code still enrols."""
    with limited_stack.client("admin") as admin, limited_stack.client() as anonymous:
        study = new_study(admin)
        [issued] = enrol(admin, study, user_ids=["guarded"])
        guessers = [f"198.51.100.{n}" for n in range(4)]
        for n, address in enumerate(guessers):
            wrong = exchange_from(anonymous, address, study, f"AAAAA-AAAA{n}")
            assert wrong.status_code == 422
        held = exchange_from(anonymous, guessers[0], study, "AAAAA-AAAAZ")
        assert held.status_code == 429
        assert int(held.headers["retry-after"]) >= 1
        # A guesser gets no answer about any code while the study is under attack.
        assert exchange_from(anonymous, guessers[1], study, issued["code"]).status_code == 429
        owner = exchange_from(anonymous, "203.0.113.7", study, issued["code"])
        assert owner.status_code == 201, owner.text
        assert owner.json()["user_id"] == "guarded"


def test_every_address_has_its_own_budget(limited_stack: Stack) -> None:
    with limited_stack.client() as anonymous:
        statuses = [
            exchange_from(anonymous, "192.0.2.44", "no-such-study", "AAAAA-AAAAA").status_code
            for _ in range(7)
        ]
        assert statuses == [404] * 6 + [429]
        other = exchange_from(anonymous, "192.0.2.45", "no-such-study", "AAAAA-AAAAA")
        assert other.status_code == 404


def test_a_class_behind_one_address_enrols_whole(limited_stack: Stack) -> None:
    """A classroom's phones share one network address (and an admin's script enrols a
    class from one machine): codes that work do not use up the address's budget of 6,
    so all 9 enrol; wrong codes from it still do."""
    classroom = "192.0.2.60"
    with limited_stack.client("admin") as admin, limited_stack.client() as anonymous:
        study = new_study(admin)
        issued = enrol(admin, study, count=9)
        for participant in issued:
            answer = exchange_from(anonymous, classroom, study, participant["code"])
            assert answer.status_code == 201, answer.text
        wrong = [
            exchange_from(anonymous, classroom, "no-such-study", "AAAAA-AAAAA").status_code
            for _ in range(7)
        ]
        assert wrong == [404] * 6 + [429]
