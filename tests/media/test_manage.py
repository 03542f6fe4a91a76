"""Listing, editing and deleting vlogs, and abandoned uploads. (A restart of the service:
tests/e2e/test_restarts.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from bson import ObjectId
from pymongo import MongoClient

from tests.conftest import Stack
from tests.ingest.conftest import new_participant
from tests.ingest.test_read import walk
from tests.media.conftest import assert_nothing_half_stored, sha256, upload


def test_listing_filters_and_pages(
    device: httpx.Client, viewer: httpx.Client, videos: dict[str, bytes]
) -> None:
    who = new_participant()
    ids = []
    for day, kind in enumerate(["h264", "vp8_webm", "mpeg4"]):
        response = upload(device, who, videos[kind], timestamp=f"2025-03-0{day + 1}T10:00:00Z")
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    listed, pages = walk(viewer, "/api/vlogs", {"user_id": who, "limit": 2})
    assert pages == 2
    assert [v["_id"] for v in listed] == list(reversed(ids))
    window = viewer.get(
        "/api/vlogs", params={"user_id": who, "since": "2025-03-02", "until": "2025-03-03"}
    ).json()
    assert [v["_id"] for v in window] == [ids[1]]
    count = viewer.get("/api/vlogs/count", params={"user_id": who}).json()
    assert count == {
        "count": 3,
        "total_bytes": sum(len(videos[k]) for k in ("h264", "vp8_webm", "mpeg4")),
    }
    summary = viewer.get("/api/vlogs/participants", params={"user_id": who}).json()
    assert [(row["user_id"], row["vlogs"], row["total_duration"]) for row in summary] == [
        (who, 3, 9.0)
    ]
    assert viewer.get("/api/vlogs/0123456789abcdef01234567").status_code == 404
    assert viewer.get("/api/vlogs/nope").status_code == 422
    assert viewer.get("/api/vlogs", params={"user_id[$ne]": "x"}).status_code == 422


def test_editing_title_and_description(
    device: httpx.Client, viewer: httpx.Client, videos: dict[str, bytes]
) -> None:
    vlog = upload(device, new_participant(), videos["h264"]).json()["vlog"]
    edited = device.patch(
        f"/api/vlogs/{vlog['_id']}", json={"title": " Lunch ", "description": "with friends"}
    )
    assert edited.status_code == 200
    assert (edited.json()["title"], edited.json()["description"]) == ("Lunch", "with friends")
    disposition = viewer.get(vlog["download_url"]).headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Lunch.mp4"')
    bad = device.patch(f"/api/vlogs/{vlog['_id']}", json={"title": 7})
    assert bad.status_code == 422
    assert bad.json()["detail"]["errors"][0]["field"] == "title"
    assert viewer.patch(f"/api/vlogs/{vlog['_id']}", json={"title": "x"}).status_code == 403


def test_deleting_removes_the_bytes(
    stack: Stack,
    device: httpx.Client,
    viewer: httpx.Client,
    admin: httpx.Client,
    videos: dict[str, bytes],
) -> None:
    who, other = new_participant(), new_participant()
    single = upload(device, who, videos["h264"]).json()["vlog"]
    upload(device, who, videos["mpeg4"])
    upload(device, who, videos["vp8_webm"])
    kept = upload(device, other, videos["h264"]).json()["vlog"]
    assert device.delete(f"/api/vlogs/{single['_id']}").status_code == 403
    gone = admin.delete(f"/api/vlogs/{single['_id']}")
    assert gone.status_code == 200
    assert gone.json() == {"user_id": who, "vlogs": 1, "bytes": len(videos["h264"])}
    assert viewer.get(single["download_url"]).status_code == 404
    everything = admin.delete(f"/api/vlogs/participants/{who}")
    assert everything.status_code == 200
    assert everything.json()["vlogs"] == 2
    assert viewer.get("/api/vlogs/count", params={"user_id": who}).json()["count"] == 0
    assert sha256(viewer.get(kept["download_url"]).content) == kept["sha256"]
    assert_nothing_half_stored(stack, viewer)


def test_abandoned_uploads_are_cleaned_up(
    stack: Stack, admin: httpx.Client, viewer: httpx.Client
) -> None:
    # What a process that died mid-upload leaves: a record and some chunks.
    storage_id, vlog_id = ObjectId(), ObjectId()
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with MongoClient(stack.config.mongodb_uri) as client:
        database = client[stack.db_name]
        database["vlogs"].insert_one(
            {
                "_id": vlog_id,
                "user_id": "P-crashed",
                "timestamp": long_ago,
                "uploaded_at": long_ago,
                "state": "uploading",
                "has_file": True,
                "storage_id": storage_id,
            }
        )
        database["videos.chunks"].insert_one({"files_id": storage_id, "n": 0, "data": b"x" * 100})
        report = admin.post("/api/vlogs/maintenance/cleanup")
        assert report.status_code == 200
        assert report.json()["removed_uploads"] >= 1
        assert database["vlogs"].count_documents({"_id": vlog_id}) == 0
        assert database["videos.chunks"].count_documents({"files_id": storage_id}) == 0
    assert viewer.post("/api/vlogs/maintenance/cleanup").status_code == 403
