"""Per-participant summaries (what the export page shows) and deleting a participant."""

from __future__ import annotations

import uuid

import httpx
from pymongo import MongoClient

from tests.conftest import Stack
from tests.ingest.test_read import store
from tests.ingest.test_write import count


def test_a_participants_summary(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    store(
        device,
        "sentiments",
        [
            {
                "user_id": participant,
                "emotion": "happy",
                "intensity": 0.9,
                "timestamp": "2025-11-20T08:00:00Z",
            },
            {
                "user_id": participant,
                "emotion": "happy",
                "intensity": 0.5,
                "timestamp": "2025-11-21T08:00:00Z",
            },
            {
                "user_id": participant,
                "emotion": "sad",
                "intensity": 0.2,
                "timestamp": "2025-11-22T08:00:00Z",
            },
        ],
    )
    store(
        device,
        "gps",
        [
            {
                "user_id": participant,
                "latitude": 25,
                "longitude": 121,
                "timestamp": "2025-11-19T08:00:00Z",
            },
            {
                "user_id": participant,
                "latitude": 25,
                "longitude": 121,
                "timestamp": "2025-11-21T09:00:00Z",
            },
        ],
    )
    summary = viewer.get(f"/api/telemetry/participants/{participant}").json()
    assert summary == {
        "user_id": participant,
        "sentiments": 3,
        "gps_fixes": 2,
        "first_activity": "2025-11-19T08:00:00Z",
        "last_activity": "2025-11-22T08:00:00Z",
        "emotions": {
            "happy": {"count": 2, "mean_intensity": 0.7},
            "sad": {"count": 1, "mean_intensity": 0.2},
        },
    }
    # The same time window as everywhere else.
    windowed = viewer.get(
        f"/api/telemetry/participants/{participant}",
        params={"since": "2025-11-21", "until": "2025-11-22"},
    ).json()
    assert (windowed["sentiments"], windowed["gps_fixes"]) == (1, 1)
    assert windowed["emotions"] == {"happy": {"count": 1, "mean_intensity": 0.5}}
    unknown = viewer.get(f"/api/telemetry/participants/{participant}-none")
    assert unknown.status_code == 404
    assert viewer.get("/api/telemetry/participants/bad%20id").status_code == 422


def test_participants_page_by_id_and_totals_add_up(stack: Stack) -> None:
    # A study of its own: no other test writes in February 2024.
    prefix = f"S{uuid.uuid4().hex[:6]}"
    people = [f"{prefix}-{n:02d}" for n in range(7)]
    window = {"since": "2024-02-01", "until": "2024-02-02"}
    with stack.client("device") as device, stack.client("viewer") as viewer:
        for n, who in enumerate(people):
            store(
                device,
                "sentiments",
                [
                    {
                        "user_id": who,
                        "emotion": "calm",
                        "intensity": 0.5,
                        "timestamp": f"2024-02-01T{n:02d}:00:00Z",
                    }
                    for _ in range(n + 1)
                ],
            )
            if n % 2:
                store(
                    device,
                    "gps",
                    [
                        {
                            "user_id": who,
                            "latitude": 1,
                            "longitude": 2,
                            "timestamp": "2024-02-01T12:00:00Z",
                        }
                    ],
                )
        seen: list[dict] = []
        cursor = None
        while True:
            params = {**window, "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = viewer.get("/api/telemetry/participants", params=params).json()
            seen.extend(page["participants"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [row["user_id"] for row in seen] == people
        assert [row["sentiments"] for row in seen] == [1, 2, 3, 4, 5, 6, 7]
        assert [row["gps_fixes"] for row in seen] == [0, 1, 0, 1, 0, 1, 0]

        # One participant, with the same paging parameters.
        one = viewer.get(
            "/api/telemetry/participants", params={**window, "user_id": people[3], "limit": 1}
        ).json()
        assert [row["user_id"] for row in one["participants"]] == [people[3]]
        assert one["next_cursor"] is None

        totals = viewer.get("/api/telemetry/summary", params=window).json()
        assert totals == {
            "sentiments": 28,
            "gps_fixes": 3,
            "participants": 7,
            "first_activity": "2024-02-01T00:00:00Z",
            "last_activity": "2024-02-01T12:00:00Z",
            "emotions": {"calm": {"count": 28, "mean_intensity": 0.5}},
        }


def test_deleting_a_participant_removes_only_theirs(
    stack: Stack, device: httpx.Client, viewer: httpx.Client, admin: httpx.Client
) -> None:
    doomed, kept = f"D-{uuid.uuid4().hex[:8]}", f"K-{uuid.uuid4().hex[:8]}"
    for who in (doomed, kept):
        store(
            device,
            "sentiments",
            [{"user_id": who, "emotion": "sad", "intensity": 0.1, "client_id": "x"}] * 1,
        )
        store(device, "sentiments", [{"user_id": who, "emotion": "sad", "intensity": 0.1}] * 4)
        store(device, "gps", [{"user_id": who, "latitude": 1, "longitude": 2}] * 3)
    path = f"/api/telemetry/participants/{doomed}"
    assert viewer.delete(path).status_code == 403
    assert device.delete(path).status_code == 403
    response = admin.delete(path)
    assert response.status_code == 200
    assert response.json() == {"user_id": doomed, "sentiments": 5, "gps_fixes": 3}
    assert count(viewer, "sentiments", doomed) == 0
    assert count(viewer, "gps", doomed) == 0
    assert count(viewer, "sentiments", kept) == 5
    assert count(viewer, "gps", kept) == 3
    with MongoClient(stack.config.mongodb_uri) as client:
        database = client[stack.db_name]
        assert database["sentiments"].count_documents({"user_id": doomed}) == 0
        assert database["gps_coordinates"].count_documents({"user_id": doomed}) == 0
    # Deleting again finds nothing, and the client id is free to be used again.
    assert admin.delete(path).json() == {"user_id": doomed, "sentiments": 0, "gps_fixes": 0}
    again = {"user_id": doomed, "emotion": "sad", "intensity": 0.1, "client_id": "x"}
    assert device.post("/api/sentiments", json=again).status_code == 201


def test_indexes_serve_the_queries_and_make_client_ids_unique(stack: Stack) -> None:
    with MongoClient(stack.config.mongodb_uri) as client:
        for collection in ("sentiments", "gps_coordinates"):
            indexes = client[stack.db_name][collection].index_information()
            keys = {name: [k for k, _ in spec["key"]] for name, spec in indexes.items()}
            assert ["user_id", "timestamp", "_id"] in keys.values()
            assert ["timestamp", "_id"] in keys.values()
            # Unique per participant of a study; the one that spanned studies is gone.
            unique = indexes["participant_client_id_study_unique"]
            assert unique["unique"] is True
            assert [k for k, _ in unique["key"]] == ["user_id", "client_id", "study_id"]
            assert "participant_client_id_unique" not in indexes


def test_an_empty_window_has_zero_totals(viewer: httpx.Client) -> None:
    window = {"since": "2001-01-01", "until": "2001-01-02"}
    assert viewer.get("/api/telemetry/summary", params=window).json() == {
        "sentiments": 0,
        "gps_fixes": 0,
        "participants": 0,
        "first_activity": None,
        "last_activity": None,
        "emotions": {},
    }
    page = viewer.get("/api/telemetry/participants", params=window).json()
    assert page == {"participants": [], "next_cursor": None}
