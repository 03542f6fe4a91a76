"""Single-record writes through the gateway: the seed's contract, time, validation, roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from tests.conftest import Stack


def fields_in_error(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["code"] == response.status_code
    return [problem["field"] for problem in body["detail"]["errors"]]


def count(viewer: httpx.Client, kind: str, user_id: str) -> int:
    return viewer.get(f"/api/{kind}/count", params={"user_id": user_id}).json()["count"]


def test_sentiment_as_the_seed_sends_it(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    sent = {"user_id": participant, "emotion": "happy", "intensity": 0.8}
    response = device.post("/api/sentiments", json=sent)
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Sentiment created successfully"
    assert len(body["id"]) == 24
    record = body["record"]
    assert record["_id"] == body["id"]
    assert record["user_id"] == participant
    assert record["emotion"] == "happy"
    assert record["intensity"] == 0.8
    # No timestamp means now; times carry an explicit offset.
    stamped = datetime.fromisoformat(record["timestamp"])
    assert stamped.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=1)
    # A later read returns exactly what the write returned.
    assert viewer.get(f"/api/sentiments/{body['id']}").json() == record


def test_gps_fix_with_what_phones_add(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    sent = {
        "user_id": participant,
        "latitude": 25.0174,
        "longitude": 121.5398,
        "altitude": 12.5,
        "accuracy": 4.2,
        "speed": -1,  # iOS: unknown
        "heading": 90,
        "location_name": "NTU Library",
        "timestamp": 1763867320123,  # epoch milliseconds, as Date.now() gives
    }
    response = device.post("/api/gps", json=sent)
    assert response.status_code == 201
    assert response.json()["message"] == "GPS coordinate created successfully"
    record = viewer.get(f"/api/gps/{response.json()['id']}").json()
    assert record["latitude"] == 25.0174
    assert record["longitude"] == 121.5398
    assert record["altitude"] == 12.5
    assert record["accuracy"] == 4.2
    assert record["speed"] is None
    assert record["heading"] == 90
    assert record["location_name"] == "NTU Library"
    assert datetime.fromisoformat(record["timestamp"]) == datetime(
        2025, 11, 23, 3, 8, 40, 123000, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2025-11-23T03:08:40.000Z", "2025-11-23T03:08:40+00:00"),
        ("2025-11-23T11:08:40+08:00", "2025-11-23T03:08:40+00:00"),
        ("2025-11-22T22:08:40.250-05:00", "2025-11-23T03:08:40.250000+00:00"),
        # Python's isoformat() without an offset: taken as UTC.
        ("2025-11-23T03:08:40.123456", "2025-11-23T03:08:40.123000+00:00"),
        (1763867320, "2025-11-23T03:08:40+00:00"),
        (1763867320.5, "2025-11-23T03:08:40.500000+00:00"),
        (1763867320000, "2025-11-23T03:08:40+00:00"),
        ("1763867320", "2025-11-23T03:08:40+00:00"),
    ],
)
def test_timestamps_are_stored_in_utc(
    stack: Stack, device: httpx.Client, participant: str, sent: Any, stored: str
) -> None:
    response = device.post(
        "/api/sentiments",
        json={"user_id": participant, "emotion": "calm", "intensity": 0.1, "timestamp": sent},
    )
    assert response.status_code == 201, response.text
    returned = datetime.fromisoformat(response.json()["record"]["timestamp"])
    assert returned == datetime.fromisoformat(stored)
    # In the database too: a BSON date, in UTC.
    with MongoClient(stack.config.mongodb_uri, tz_aware=True) as client:
        document = client[stack.db_name]["sentiments"].find_one({"user_id": participant})
    assert document is not None
    assert document["timestamp"] == datetime.fromisoformat(stored)


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param((datetime.now(UTC) + timedelta(days=3)).isoformat(), id="in-3-days"),
        0,
        "1999-12-31T23:59:59Z",
        "yesterday",
        "",
        True,
        [2025, 11, 23],
    ],
)
def test_implausible_timestamps_are_refused(
    device: httpx.Client, viewer: httpx.Client, participant: str, timestamp: Any
) -> None:
    response = device.post(
        "/api/sentiments",
        json={"user_id": participant, "emotion": "calm", "intensity": 0.1, "timestamp": timestamp},
    )
    assert response.status_code == 422
    assert fields_in_error(response) == ["timestamp"]
    assert count(viewer, "sentiments", participant) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"intensity": 1.5}, "intensity"),
        ({"intensity": -0.1}, "intensity"),
        ({"intensity": "0.5"}, "intensity"),
        ({"intensity": None}, "intensity"),
        ({"intensity": True}, "intensity"),
        ({"emotion": ""}, "emotion"),
        ({"emotion": "   "}, "emotion"),
        ({"emotion": "x" * 65}, "emotion"),
        ({"note": "x" * 2001}, "note"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "a" * 129}, "user_id"),
        ({"user_id": "P 1"}, "user_id"),
        ({"user_id": "P1\n"}, "user_id"),
        ({"user_id": {"$ne": None}}, "user_id"),
        ({"user_id": ["P1"]}, "user_id"),
        ({"client_id": "has space"}, "client_id"),
        ({"client_id": {"$gt": ""}}, "client_id"),
    ],
)
def test_bad_sentiments_name_the_field(
    device: httpx.Client, viewer: httpx.Client, participant: str, change: dict, field: str
) -> None:
    sent = {"user_id": participant, "emotion": "sad", "intensity": 0.4, **change}
    response = device.post("/api/sentiments", json=sent)
    assert response.status_code == 422, response.text
    assert fields_in_error(response) == [field]
    assert response.json()["detail"]["error"].startswith(f"{field}: ")
    assert count(viewer, "sentiments", participant) == 0


@pytest.mark.parametrize("missing", ["user_id", "emotion", "intensity"])
def test_missing_fields_are_named(device: httpx.Client, participant: str, missing: str) -> None:
    sent = {"user_id": participant, "emotion": "sad", "intensity": 0.4}
    del sent[missing]
    response = device.post("/api/sentiments", json=sent)
    assert response.status_code == 422
    assert response.json()["detail"]["errors"] == [{"field": missing, "reason": "is required"}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"latitude": 90.0001}, "latitude"),
        ({"latitude": -91}, "latitude"),
        ({"longitude": 180.5}, "longitude"),
        ({"longitude": "121.5"}, "longitude"),
        ({"accuracy": -3}, "accuracy"),
        ({"location_name": "x" * 257}, "location_name"),
    ],
)
def test_bad_gps_fixes_name_the_field(
    device: httpx.Client, viewer: httpx.Client, participant: str, change: dict, field: str
) -> None:
    sent = {"user_id": participant, "latitude": 25.0, "longitude": 121.5, **change}
    response = device.post("/api/gps", json=sent)
    assert response.status_code == 422
    assert fields_in_error(response) == [field]
    assert count(viewer, "gps", participant) == 0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_name_the_field(
    device: httpx.Client, viewer: httpx.Client, participant: str, literal: bytes
) -> None:
    body = b'{"user_id": "%s", "latitude": %s, "longitude": 121.5}' % (
        participant.encode(),
        literal,
    )
    response = device.post("/api/gps", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    problem = response.json()["detail"]["errors"][0]
    assert problem["field"] == "latitude"
    assert "finite" in problem["reason"]
    assert count(viewer, "gps", participant) == 0


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"user_id": "P1", ', b"[]", b'"text"', b"null"]
)
def test_bodies_that_are_not_a_record(device: httpx.Client, body: bytes) -> None:
    response = device.post(
        "/api/sentiments", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert response.json()["detail"]["error"]
    assert "Traceback" not in response.text


def test_a_body_over_the_size_limit_is_refused(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    sent = {"user_id": participant, "emotion": "sad", "intensity": 0.4, "note": "x" * 2_000_000}
    response = device.post("/api/sentiments", json=sent)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]["error"]
    assert count(viewer, "sentiments", participant) == 0


def test_a_resent_client_id_is_a_conflict_naming_the_stored_record(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    sent = {"user_id": participant, "emotion": "joyful", "intensity": 0.9, "client_id": "r-1"}
    first = device.post("/api/sentiments", json=sent)
    assert first.status_code == 201
    again = device.post("/api/sentiments", json={**sent, "intensity": 0.1})
    assert again.status_code == 409
    assert again.json()["detail"]["id"] == first.json()["id"]
    assert count(viewer, "sentiments", participant) == 1
    # The same client id belongs to each participant separately.
    other = device.post("/api/sentiments", json={**sent, "user_id": participant + "-b"})
    assert other.status_code == 201


def test_emotion_labels_are_stored_trimmed_and_lower_case(
    device: httpx.Client, participant: str
) -> None:
    sent = {"user_id": participant, "emotion": "  Excited ", "intensity": 1}
    assert device.post("/api/sentiments", json=sent).json()["record"]["emotion"] == "excited"


def test_roles_for_writing(
    viewer: httpx.Client, anonymous: httpx.Client, admin: httpx.Client, participant: str
) -> None:
    sent = {"user_id": participant, "emotion": "sad", "intensity": 0.4}
    assert anonymous.post("/api/sentiments", json=sent).status_code == 401
    assert anonymous.post("/api/gps/batch", json=[]).status_code == 401
    assert viewer.post("/api/sentiments", json=sent).status_code == 403
    assert viewer.post("/api/sentiments/batch", json=[sent]).status_code == 403
    assert admin.post("/api/sentiments", json=sent).status_code == 201
    assert viewer.get("/api/sentiments/count", params={"user_id": participant}).json() == {
        "count": 1
    }
