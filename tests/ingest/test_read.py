"""Reading telemetry back: filters, cursor pages, counts, the NDJSON stream, injections."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.ingest.conftest import new_participant
from tests.support import documented_path_form, wait_until

BASE = datetime(2025, 11, 20, tzinfo=UTC)


def store(device: httpx.Client, kind: str, records: list[dict]) -> list[str]:
    """Stores `records` as a phone does: each with a `client_id`, so a batch answered
    503 (the database held past its deadline) is sent again, until it is answered,
    without storing anything twice."""
    records = [{"client_id": uuid.uuid4().hex, **record} for record in records]
    answers: list[httpx.Response] = []

    def answered() -> bool:
        answers.append(device.post(f"/api/{kind}/batch", json=records))
        return answers[-1].status_code != 503

    wait_until(answered, 120, f"the {kind} batch to be taken")
    response = answers[-1]
    assert response.status_code in (200, 201, 207), (response.status_code, response.text)
    result = response.json()
    outcomes = result["results"]
    assert all(outcome["status"] in ("stored", "duplicate") for outcome in outcomes), result
    assert len(outcomes) == len(records), result
    return [outcome["id"] for outcome in outcomes]


def walk(viewer: httpx.Client, path: str, params: dict | None = None) -> tuple[list[dict], int]:
    """Every record of a listing, following `Link` headers; and the number of pages."""
    records: list[dict] = []
    pages = 0
    response = viewer.get(path, params=params)  # None keeps a query already in `path`
    while True:
        assert response.status_code == 200, response.text
        pages += 1
        records.extend(response.json())
        if "link" not in response.headers:
            assert "x-next-cursor" not in response.headers
            return records, pages
        link = response.headers["link"]
        assert link.endswith('>; rel="next"')
        response = viewer.get(link[1 : link.index(">")])


def test_pagination_visits_every_record_exactly_once(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    # 250 records, many sharing a timestamp, so the tie-break on _id matters.
    records = [
        {
            "user_id": participant,
            "emotion": "calm",
            "intensity": 0.5,
            "timestamp": (BASE + timedelta(seconds=i // 7)).isoformat(),
        }
        for i in range(250)
    ]
    ids = store(device, "sentiments", records)
    for order in ("desc", "asc"):
        seen, pages = walk(
            viewer, "/api/sentiments", {"user_id": participant, "limit": 37, "order": order}
        )
        assert pages == 7
        assert sorted(r["_id"] for r in seen) == sorted(ids)
        keys = [(r["timestamp"], r["_id"]) for r in seen]
        assert keys == sorted(keys, reverse=order == "desc")


def test_pages_stay_consistent_while_new_records_arrive(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    older = [
        {"user_id": participant, "latitude": 25.0, "longitude": 121.5, "timestamp": 1763000000 + i}
        for i in range(10)
    ]
    ids = store(device, "gps", older)
    first = viewer.get("/api/gps", params={"user_id": participant, "limit": 4})
    # Newer fixes arrive between pages; a newest-first walk does not repeat or skip.
    store(device, "gps", [{**older[0], "timestamp": 1763000500}])
    link = first.headers["link"]
    rest, _ = walk(viewer, link[1 : link.index(">")])
    assert sorted(r["_id"] for r in first.json() + rest) == sorted(ids)


def test_seed_listing_defaults_to_100_records(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    store(
        device,
        "sentiments",
        [{"user_id": participant, "emotion": "sad", "intensity": 0.2} for _ in range(120)],
    )
    response = viewer.get("/api/sentiments", params={"user_id": participant})
    assert isinstance(response.json(), list)
    assert len(response.json()) == 100
    assert response.headers["x-next-cursor"]


def test_filters_by_participant_time_and_emotion(
    device: httpx.Client, viewer: httpx.Client
) -> None:
    alice, bob = new_participant(), new_participant()
    for who in (alice, bob):
        store(
            device,
            "sentiments",
            [
                {
                    "user_id": who,
                    "emotion": emotion,
                    "intensity": 0.5,
                    "timestamp": (BASE + timedelta(hours=hour)).isoformat(),
                }
                for hour, emotion in enumerate(["happy", "sad", "happy", "calm", "happy"])
            ],
        )

    def listed(**params: str) -> list[dict]:
        response = viewer.get("/api/sentiments", params={"order": "asc", **params})
        assert response.status_code == 200, response.text
        counted = viewer.get("/api/sentiments/count", params=params).json()["count"]
        assert counted == len(response.json())
        return response.json()

    assert {r["user_id"] for r in listed(user_id=alice)} == {alice}
    assert len(listed(user_id=alice)) == 5
    assert [r["emotion"] for r in listed(user_id=alice, emotion="HAPPY")] == ["happy"] * 3
    # `since` is inclusive, `until` exclusive; an offset is honoured.
    window = listed(
        user_id=bob,
        since=(BASE + timedelta(hours=1)).isoformat(),
        until="2025-11-20T11:00:00+08:00",
    )
    assert [r["emotion"] for r in window] == ["sad", "happy"]
    assert listed(user_id=bob, since="2025-11-21") == []
    epoch = str(int((BASE + timedelta(hours=4)).timestamp()))
    assert len(listed(user_id=bob, since=epoch)) == 1


def test_gps_bounding_box(device: httpx.Client, viewer: httpx.Client, participant: str) -> None:
    places = {
        "taipei": (25.03, 121.56),
        "tokyo": (35.68, 139.69),
        "fiji": (-17.7, 178.1),
        "samoa": (-13.8, -171.8),
    }
    store(
        device,
        "gps",
        [
            {"user_id": participant, "latitude": lat, "longitude": lon, "location_name": name}
            for name, (lat, lon) in places.items()
        ],
    )

    def inside(bbox: str) -> set[str]:
        response = viewer.get("/api/gps", params={"user_id": participant, "bbox": bbox})
        assert response.status_code == 200, response.text
        return {r["location_name"] for r in response.json()}

    assert inside("121,24,122,26") == {"taipei"}
    assert inside("100,0,150,40") == {"taipei", "tokyo"}
    # West edge east of the east edge: the box crosses the antimeridian.
    assert inside("170,-30,-170,0") == {"fiji", "samoa"}
    for bad in ("1,2,3", "a,b,c,d", "0,10,10,0", "0,0,200,10", "nan,0,1,1"):
        response = viewer.get("/api/gps", params={"bbox": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"]["errors"][0]["field"] == "bbox"


def test_stream_gives_every_matching_record_as_ndjson(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    records = [
        {"user_id": participant, "emotion": "calm", "intensity": 0.3, "timestamp": 1763000000 - i}
        for i in range(1500)
    ]
    ids = store(device, "sentiments", records[:1000]) + store(device, "sentiments", records[1000:])
    with viewer.stream(
        "GET", "/api/sentiments/stream", params={"user_id": participant}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert sorted(r["_id"] for r in lines) == sorted(ids)
    times = [r["timestamp"] for r in lines]
    assert times == sorted(times)
    only_calm = viewer.get(
        "/api/sentiments/stream", params={"user_id": participant, "emotion": "sad"}
    )
    assert only_calm.text == ""


def test_one_record_by_id(viewer: httpx.Client) -> None:
    assert viewer.get("/api/gps/0123456789abcdef01234567").status_code == 404
    malformed = viewer.get("/api/gps/not-an-id")
    assert malformed.status_code == 422
    assert malformed.json()["detail"]["errors"][0]["field"] == "id"
    # The document tells clients the form the service accepts.
    form = documented_path_form(viewer, "ingest", "/api/gps/{record_id}")
    assert form.search("0123456789abcdef01234567")
    assert not form.search("not-an-id")
    assert not form.search("0123456789abcdef0123456")  # one character short


@pytest.mark.parametrize(
    "params",
    [
        {"user_id[$ne]": "nobody"},
        {"$where": "1 == 1"},
        {"user_id": '{"$gt": ""}'},
        {"user_id": "$ne"},
        {"user_id": "P1\n"},
        {"since[$gt]": "2000-01-01"},
        {"emotion[$regex]": ".*"},
        {"filter": '{"user_id": {"$exists": true}}'},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"order": "sideways"},
        {"cursor": "not-a-cursor"},
        {"since": "2025-11-21", "until": "2025-11-20"},
    ],
)
def test_injections_and_bad_parameters_get_4xx_and_no_data(
    device: httpx.Client, viewer: httpx.Client, participant: str, params: dict
) -> None:
    store(device, "sentiments", [{"user_id": participant, "emotion": "sad", "intensity": 0.1}])
    for path in ("/api/sentiments", "/api/sentiments/count", "/api/sentiments/stream"):
        if path != "/api/sentiments" and set(params) & {"limit", "order", "cursor"}:
            continue
        response = viewer.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        problems = response.json()["detail"]["errors"]
        assert {p["field"] for p in problems} <= {*params, "user_id", "until"}
        for problem in problems:
            if problem["field"] == "user_id":
                assert problem["reason"].startswith("must be 1-128 characters")
        assert participant not in response.text


def test_a_parameter_given_twice_is_refused(viewer: httpx.Client) -> None:
    response = viewer.get("/api/sentiments?user_id=a&user_id=b")
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0] == {
        "field": "user_id",
        "reason": "must be given at most once",
        "source": "query",
    }


def test_a_caller_without_a_credential_learns_nothing_of_the_parameters(
    anonymous: httpx.Client, viewer: httpx.Client
) -> None:
    # The credential is checked before the query: no list of known parameters for a
    # caller who may not read, and the same list for one who may.
    refused = anonymous.get("/api/sentiments", params={"guess": "1"})
    assert refused.status_code == 401
    assert "known:" not in refused.text
    assert "user_id" not in refused.text
    checked = viewer.get("/api/sentiments", params={"guess": "1"})
    assert checked.status_code == 422
    problem = checked.json()["detail"]["errors"][0]
    assert problem["field"] == "guess"
    assert "user_id" in problem["reason"]


def test_a_cursor_only_works_with_its_own_order(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    store(
        device,
        "sentiments",
        [{"user_id": participant, "emotion": "sad", "intensity": 0.1} for _ in range(3)],
    )
    cursor = viewer.get("/api/sentiments", params={"user_id": participant, "limit": 1}).headers[
        "x-next-cursor"
    ]
    response = viewer.get(
        "/api/sentiments",
        params={"user_id": participant, "limit": 1, "order": "asc", "cursor": cursor},
    )
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["field"] == "cursor"


def test_roles_for_reading(
    anonymous: httpx.Client, device: httpx.Client, admin: httpx.Client, participant: str
) -> None:
    paths = [
        "/api/sentiments",
        "/api/gps",
        "/api/sentiments/count",
        "/api/gps/stream",
        "/api/gps/0123456789abcdef01234567",
        "/api/telemetry/summary",
        "/api/telemetry/participants",
    ]
    for path in paths:
        assert anonymous.get(path).status_code == 401, path
        # Phones write; they do not read anybody's data back.
        assert device.get(path).status_code == 403, path
        assert admin.get(path).status_code in (200, 404), path
