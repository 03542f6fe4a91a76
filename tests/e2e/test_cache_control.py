"""What browsers and proxies may keep. Answers hold participant data, so none is kept
(`Cache-Control: no-store`, OWASP ASVS 8.2.1): a TA's export on a lab's shared
computer must not stay in its browser's cache. Two kinds of answer may be kept, and
say so once: a vlog's bytes, which never change (by the viewer's browser only), and
the map's library (by anyone)."""

from __future__ import annotations

import httpx
import pytest

from tests.ingest.conftest import new_participant
from tests.media.conftest import h264_video, upload

NOT_KEPT = [
    "/export",
    "/api/sentiments",
    "/api/vlogs",
    "/api/telemetry/summary",
    "/api/export/gps.csv",
    "/api/export/sentiments.json",
    "/api/studies",
    "/api/v1/whoami",
    "/health",
]
VLOG_BYTES = ["/api/vlogs/{id}/download", "/api/vlogs/{id}/play", "/api/vlogs/{id}/thumbnail"]


def cache_control(answer: httpx.Response) -> str:
    [value] = answer.headers.get_list("cache-control")
    return value


@pytest.mark.parametrize("path", NOT_KEPT)
def test_answers_with_participant_data_are_not_kept(viewer: httpx.Client, path: str) -> None:
    answer = viewer.get(path)
    assert answer.status_code == 200, answer.text[:300]
    assert cache_control(answer) == "no-store"


def test_a_stored_record_is_not_kept_either(device: httpx.Client) -> None:
    record = {"user_id": new_participant(), "emotion": "calm", "intensity": 0.4}
    answer = device.post("/api/sentiments", json=record)
    assert answer.status_code == 201, answer.text
    assert cache_control(answer) == "no-store"


@pytest.fixture(scope="module")
def vlog_id(stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    video = h264_video(tmp_path_factory.mktemp("cache") / "diary.mp4", 23)
    with stack.client("device") as device:
        answer = upload(device, new_participant(), video, title="Cached")
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.mark.parametrize("path", VLOG_BYTES)
def test_a_vlogs_bytes_may_be_kept_by_the_viewers_browser_only(
    viewer: httpx.Client, vlog_id: str, path: str
) -> None:
    answer = viewer.get(path.format(id=vlog_id))
    assert answer.status_code == 200
    assert {d.strip() for d in cache_control(answer).split(",")} == {"private", "max-age=86400"}
    if "etag" in answer.headers:
        again = viewer.get(
            path.format(id=vlog_id), headers={"If-None-Match": answer.headers["etag"]}
        )
        assert again.status_code == 304
        assert cache_control(again) == cache_control(answer)


def test_the_vlogs_record_is_not_kept(viewer: httpx.Client, vlog_id: str) -> None:
    assert cache_control(viewer.get(f"/api/vlogs/{vlog_id}")) == "no-store"


def test_the_maps_library_may_be_kept_by_anyone(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/static/leaflet/leaflet.js")
    assert answer.status_code == 200
    assert {d.strip() for d in cache_control(answer).split(",")} == {"public", "max-age=86400"}
