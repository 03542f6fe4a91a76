"""HEAD, the GET of a target without its content (RFC 9110 §9.3.2), which every
general-purpose server supports (§9.1): uptime monitors and link checkers send it to
the gateway's pages, to the services' reads it forwards, and to exports."""

from __future__ import annotations

import httpx
import pytest

from tests.ingest.conftest import new_participant

# (path, whether its content is the same from one request to the next)
READS = [
    ("/docs", True),
    ("/api/export/codebook.csv", True),
    ("/health", False),  # latencies
    ("/export", False),  # the time of the cockpit
    ("/api/sentiments?limit=5", False),  # records other tests send
]


@pytest.mark.parametrize(("path", "fixed"), READS)
def test_head_answers_as_get_without_the_content(
    viewer: httpx.Client, path: str, fixed: bool
) -> None:
    whole = viewer.get(path)
    head = viewer.head(path)
    assert whole.status_code == 200, whole.text[:300]
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == whole.headers["content-type"]
    assert int(head.headers["content-length"]) > 0
    if fixed:
        assert head.headers["content-length"] == whole.headers["content-length"]
    assert head.headers["x-request-id"] != whole.headers["x-request-id"]


def test_head_of_a_streamed_export_ends_after_its_headers(
    viewer: httpx.Client, device: httpx.Client
) -> None:
    who = new_participant()
    posted = device.post("/api/gps", json={"user_id": who, "latitude": 25.0, "longitude": 121.5})
    assert posted.status_code == 201, posted.text
    head = viewer.head("/api/export/gps.csv", params={"user_id": who})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "text/csv; charset=utf-8"
    assert head.headers["content-disposition"].startswith("attachment;")
    assert who in viewer.get("/api/export/gps.csv", params={"user_id": who}).text


def test_head_needs_the_credential_get_needs(anonymous: httpx.Client) -> None:
    answer = anonymous.head("/api/sentiments")
    assert answer.status_code == 401
    assert answer.content == b""
    assert "www-authenticate" in answer.headers


def test_head_of_a_target_without_get_is_405_naming_its_methods(device: httpx.Client) -> None:
    answer = device.head("/api/sentiments/batch")
    assert answer.status_code == 405
    assert "POST" in answer.headers["allow"]


def test_options_lists_head_beside_get(viewer: httpx.Client) -> None:
    answer = viewer.options("/api/sentiments")
    allowed = {method.strip() for method in answer.headers["allow"].split(",")}
    assert {"GET", "HEAD", "POST"} <= allowed
