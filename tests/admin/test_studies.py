"""Studies through the gateway: the admin creates, lists, reads, changes and closes
them; `default` always exists and stays open; nobody else may touch them."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

from tests.conftest import Stack


def new_study_id() -> str:
    return f"course-{uuid.uuid4().hex[:10]}"


def test_a_study_is_created_read_listed_and_changed(admin: httpx.Client) -> None:
    study_id = new_study_id()
    created = admin.post(
        "/api/studies",
        json={"study_id": study_id, "name": "Psychology 101", "time_zone": "Asia/Taipei"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["study_id"] == study_id
    assert body["name"] == "Psychology 101"
    assert body["time_zone"] == "Asia/Taipei"
    assert body["status"] == "active"
    assert body["closed_at"] is None
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None

    assert admin.get(f"/api/studies/{study_id}").json() == body
    listed = admin.get("/api/studies").json()
    assert body in listed
    assert [s["study_id"] for s in listed] == sorted(s["study_id"] for s in listed)

    changed = admin.patch(f"/api/studies/{study_id}", json={"name": "Psychology 102"})
    assert changed.status_code == 200
    assert changed.json()["name"] == "Psychology 102"
    assert changed.json()["time_zone"] == "Asia/Taipei"
    moved = admin.patch(f"/api/studies/{study_id}", json={"time_zone": "Europe/Berlin"})
    assert moved.json()["time_zone"] == "Europe/Berlin"
    assert moved.json()["updated_at"] >= changed.json()["updated_at"]
    assert admin.get(f"/api/studies/{study_id}").json()["name"] == "Psychology 102"


def test_the_default_study_always_exists_and_stays_open(admin: httpx.Client) -> None:
    default = admin.get("/api/studies/default")
    assert default.status_code == 200
    assert default.json()["status"] == "active"
    refused = admin.post("/api/studies/default/close")
    assert refused.status_code == 409
    assert "default" in refused.json()["detail"]["error"]
    assert admin.get("/api/studies/default").json()["status"] == "active"


def test_closing_is_recorded_once_and_filters_the_list(admin: httpx.Client) -> None:
    study_id = new_study_id()
    admin.post("/api/studies", json={"study_id": study_id, "name": "Cohort"})
    closed = admin.post(f"/api/studies/{study_id}/close")
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    closed_at = closed.json()["closed_at"]
    assert closed_at is not None
    again = admin.post(f"/api/studies/{study_id}/close")
    assert again.json()["closed_at"] == closed_at
    assert study_id in [s["study_id"] for s in admin.get("/api/studies?status=closed").json()]
    assert study_id not in [s["study_id"] for s in admin.get("/api/studies?status=active").json()]
    # Still readable, and its metadata still editable.
    assert admin.patch(f"/api/studies/{study_id}", json={"name": "Old"}).status_code == 200


def test_a_taken_id_is_refused_and_the_first_study_kept(admin: httpx.Client) -> None:
    study_id = new_study_id()
    admin.post("/api/studies", json={"study_id": study_id, "name": "First"})
    again = admin.post("/api/studies", json={"study_id": study_id, "name": "Second"})
    assert again.status_code == 409
    assert admin.get(f"/api/studies/{study_id}").json()["name"] == "First"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"study_id": "Has Caps", "name": "x"}, "study_id"),
        ({"study_id": "x", "name": "x"}, "study_id"),
        ({"study_id": "ok-id", "name": ""}, "name"),
        ({"study_id": "ok-id", "name": "x", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"study_id": "ok-id", "name": "x", "time_zone": "../../etc/passwd"}, "time_zone"),
        ({"study_id": "ok-id", "name": "x", "owner": "me"}, "owner"),
        ({"name": "x"}, "study_id"),
        # Not a URL Python can read (a broken IPv6 host): once a 500.
        ({"study_id": "ok-id", "name": "x", "webhook_url": "https://D!]"}, "webhook_url"),
        ({"study_id": "ok-id", "name": "x", "webhook_url": "https://host:99999/"}, "webhook_url"),
        ({"study_id": "ok-id", "name": "x", "webhook_url": "https:///no-host"}, "webhook_url"),
    ],
)
def test_bad_studies_are_refused_naming_the_field(
    admin: httpx.Client, body: dict, field: str
) -> None:
    response = admin.post("/api/studies", json=body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["detail"]["errors"]]
    assert admin.get("/api/studies/ok-id").status_code == 404


def test_a_bad_change_leaves_the_study_as_it_was(admin: httpx.Client) -> None:
    study_id = new_study_id()
    admin.post("/api/studies", json={"study_id": study_id, "name": "Kept"})
    before = admin.get(f"/api/studies/{study_id}").json()
    refused = admin.patch(f"/api/studies/{study_id}", json={"time_zone": "Nowhere/City"})
    assert refused.status_code == 422
    assert admin.get(f"/api/studies/{study_id}").json() == before
    assert admin.patch("/api/studies/no-such-study", json={"name": "x"}).status_code == 404
    assert admin.post("/api/studies/no-such-study/close").status_code == 404


def test_only_the_admin_changes_studies_and_viewers_read_theirs(
    stack: Stack,
    admin: httpx.Client,
    viewer: httpx.Client,
    device: httpx.Client,
    anonymous: httpx.Client,
) -> None:
    for client, status in ((viewer, 403), (device, 403), (anonymous, 401)):
        created = client.post("/api/studies", json={"study_id": new_study_id(), "name": "x"})
        assert created.status_code == status
        assert client.post("/api/studies/default/close").status_code == status
        changed = client.patch("/api/studies/default", json={"name": "mine now"})
        assert changed.status_code == status
    for client, status in ((device, 403), (anonymous, 401)):
        assert client.get("/api/studies").status_code == status
        assert client.get("/api/studies/default").status_code == status
    # A viewer reads studies (names and time zones for the export page); a study
    # viewer only its own, another is 404 as if absent.
    mine, other = new_study_id(), new_study_id()
    for study_id in (mine, other):
        admin.post("/api/studies", json={"study_id": study_id, "name": study_id})
    assert {mine, other, "default"} <= {s["study_id"] for s in viewer.get("/api/studies").json()}
    token = admin.post("/api/viewer-tokens", json={"name": "TA", "study_ids": [mine]}).json()
    with stack.client() as ta:
        ta.headers["Authorization"] = f"Bearer {token['token']}"
        assert [s["study_id"] for s in ta.get("/api/studies").json()] == [mine]
        assert ta.get(f"/api/studies/{mine}").status_code == 200
        assert ta.get(f"/api/studies/{other}").status_code == 404
        assert ta.post(f"/api/studies/{mine}/close").status_code == 403
