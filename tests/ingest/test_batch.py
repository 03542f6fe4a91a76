"""Batch uploads as phones make them after being offline: partial failures, resends."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from tests.ingest.test_write import count


def sentiments(participant: str, n: int, prefix: str = "c") -> list[dict]:
    return [
        {
            "user_id": participant,
            "emotion": ("happy", "sad", "calm")[i % 3],
            "intensity": round(i / n, 3),
            "timestamp": 1763867320 + i,
            "client_id": f"{prefix}-{i}",
        }
        for i in range(n)
    ]


def test_valid_and_invalid_records_mixed(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    records = sentiments(participant, 6)
    records[1]["intensity"] = 7
    records[3] = {"user_id": participant, "emotion": "calm"}
    records[4]["timestamp"] = "next tuesday"
    response = device.post("/api/sentiments/batch", json=records)
    assert response.status_code == 200
    result = response.json()
    assert (result["received"], result["stored"], result["duplicates"], result["rejected"]) == (
        6,
        3,
        0,
        3,
    )
    by_index = {outcome["index"]: outcome for outcome in result["results"]}
    assert [by_index[i]["status"] for i in range(6)] == [
        "stored",
        "rejected",
        "stored",
        "rejected",
        "rejected",
        "stored",
    ]
    assert by_index[1]["errors"][0]["field"] == "intensity"
    assert by_index[3]["errors"] == [{"field": "intensity", "reason": "is required"}]
    assert by_index[4]["errors"][0]["field"] == "timestamp"
    # Each stored id reads back as the record sent at that index.
    for index in (0, 2, 5):
        stored = viewer.get(f"/api/sentiments/{by_index[index]['id']}").json()
        assert stored["client_id"] == f"c-{index}"
    assert count(viewer, "sentiments", participant) == 3


def test_a_resent_batch_stores_nothing_twice(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    records = sentiments(participant, 50)
    first = device.post("/api/sentiments/batch", json=records[:30]).json()
    assert first["stored"] == 30
    # The phone lost the reply and resends everything it has, plus new records.
    second = device.post("/api/sentiments/batch", json=records).json()
    assert (second["stored"], second["duplicates"], second["rejected"]) == (20, 30, 0)
    first_ids = [o["id"] for o in first["results"]]
    assert [o["id"] for o in second["results"][:30]] == first_ids
    third = device.post("/api/sentiments/batch", json=records).json()
    assert (third["stored"], third["duplicates"]) == (0, 50)
    assert count(viewer, "sentiments", participant) == 50


def test_a_large_batch_sent_again_is_stored_once_across_its_pieces(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    """A batch is inserted in pieces (services.ingest.services.INSERT_PIECE): duplicates
    in any piece are reported at their own index, with the stored record's id."""
    records = sentiments(participant, 450)
    first = device.post("/api/sentiments/batch", json=records[:300]).json()
    assert first["stored"] == 300
    second = device.post("/api/sentiments/batch", json=records).json()
    assert (second["stored"], second["duplicates"], second["rejected"]) == (150, 300, 0)
    assert [o["status"] for o in second["results"]] == ["duplicate"] * 300 + ["stored"] * 150
    assert [o["id"] for o in second["results"][:300]] == [o["id"] for o in first["results"]]
    assert count(viewer, "sentiments", participant) == 450


def test_a_duplicate_names_the_stored_record_whatever_its_time(
    device: httpx.Client, participant: str
) -> None:
    """Duplicates are looked up by the batch's time span first; the first and last
    record of the span, and a client id sent again with another time, are found too."""
    records = sentiments(participant, 5)
    first = device.post("/api/sentiments/batch", json=records).json()
    stored_ids = {o["index"]: o["id"] for o in first["results"]}
    again = [records[0], records[4], {**records[2], "timestamp": 1763867320 + 9999}]
    second = device.post("/api/sentiments/batch", json=again).json()
    assert [o["status"] for o in second["results"]] == ["duplicate"] * 3
    assert [o["id"] for o in second["results"]] == [stored_ids[0], stored_ids[4], stored_ids[2]]


def test_repeats_inside_one_batch_are_duplicates(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    record = sentiments(participant, 1)[0]
    result = device.post("/api/sentiments/batch", json=[record, record, record]).json()
    assert [o["status"] for o in result["results"]] == ["stored", "duplicate", "duplicate"]
    assert len({o["id"] for o in result["results"]}) == 1
    assert count(viewer, "sentiments", participant) == 1


def test_records_without_a_client_id_are_all_stored(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    record = {"user_id": participant, "latitude": 25.0, "longitude": 121.5}
    assert device.post("/api/gps/batch", json=[record, record]).json()["stored"] == 2
    assert count(viewer, "gps", participant) == 2


def test_ndjson_batches(device: httpx.Client, viewer: httpx.Client, participant: str) -> None:
    fixes = [
        {"user_id": participant, "latitude": 25 + i / 1000, "longitude": 121.5, "client_id": str(i)}
        for i in range(4)
    ]
    lines = [json.dumps(fix) for fix in fixes]
    lines.insert(2, "")  # blank lines are not records
    lines.insert(3, '{"user_id": "oops",')
    body = "\n".join(lines) + "\n"
    response = device.post(
        "/api/gps/batch", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200
    result = response.json()
    assert (result["received"], result["stored"], result["rejected"]) == (5, 4, 1)
    assert result["results"][2]["status"] == "rejected"
    assert "line 4" in result["results"][2]["errors"][0]["reason"]
    assert count(viewer, "gps", participant) == 4


def test_nan_in_a_batch_rejects_only_that_record(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    body = (
        f'[{{"user_id": "{participant}", "emotion": "sad", "intensity": NaN}},'
        f' {{"user_id": "{participant}", "emotion": "sad", "intensity": 0.5}}]'
    )
    result = device.post(
        "/api/sentiments/batch", content=body, headers={"Content-Type": "application/json"}
    ).json()
    assert [o["status"] for o in result["results"]] == ["rejected", "stored"]
    assert result["results"][0]["errors"][0]["field"] == "intensity"
    assert count(viewer, "sentiments", participant) == 1


def test_a_batch_over_the_record_limit_stores_nothing(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    response = device.post("/api/sentiments/batch", json=sentiments(participant, 1001))
    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["field"] == "body"
    assert "at most 1000" in response.json()["detail"]["error"]
    assert count(viewer, "sentiments", participant) == 0


def test_a_batch_over_the_size_limit_stores_nothing(
    device: httpx.Client, viewer: httpx.Client, participant: str
) -> None:
    record = json.dumps({"user_id": participant, "emotion": "sad", "intensity": 0.5})

    def chunked() -> Iterator[bytes]:
        # No Content-Length: the limit must hold on the bytes actually received.
        yield b"["
        for _ in range(9 * 1024):
            yield (record + ",").encode() * 16
        yield record.encode() + b"]"

    response = device.post(
        "/api/sentiments/batch", content=chunked(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"]["limit"] == 8 * 1024 * 1024
    assert count(viewer, "sentiments", participant) == 0


def test_batch_bodies_that_are_not_a_batch(device: httpx.Client) -> None:
    for body, content_type, status in [
        (b'{"records": []', "application/json", 422),
        (b"[1, 2", "application/json", 400),
        (b"hello", "text/plain", 415),
        (b'[{"user_id": "P1", "emotion": "joy", "intensity": 0.5}]', "text/plain", 415),
    ]:
        response = device.post(
            "/api/sentiments/batch", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == status, body
        assert response.json()["detail"]["error"]
    # Elements that are not objects are rejected one by one.
    result = device.post("/api/sentiments/batch", json=[1, "x", None]).json()
    assert result["rejected"] == 3
    assert result["results"][0]["errors"][0]["reason"] == "must be a JSON object, got int"


def test_an_empty_batch_is_a_no_op(device: httpx.Client) -> None:
    result = device.post("/api/gps/batch", json=[]).json()
    assert result == {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0, "results": []}
