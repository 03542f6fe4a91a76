"""The gateway's HTML pages load nothing but the gateway's own scripts, styles, images
and videos (and the map's tiles), and no other site may frame them; the browser tests
of the export page and the map show that they work under that policy."""

from __future__ import annotations

import httpx
import pytest

from services.gateway.pages.headers import tile_origin
from services.gateway.settings import OSM_TILES
from tests.ingest.conftest import new_participant

PAGES = ["/", "/docs", "/export", "/export/map?user_id={who}"]


def directives(policy: str) -> dict[str, list[str]]:
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {name: sources for name, *sources in parts}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_sent_with_its_policy(viewer: httpx.Client, path: str) -> None:
    answer = viewer.get(path.format(who=new_participant()))
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    policy = directives(answer.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    # The session's stack has its tiles off (tests/gateway/test_maps.py: with tiles).
    assert policy["img-src"] == ["'self'", "data:"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    # No inline script for the policy to have to allow.
    assert "<script>" not in answer.text


def test_the_pages_own_script_is_a_file_of_the_gateway(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/static/emogo/map.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "L.tileLayer" in answer.text


def test_the_services_answers_and_their_docs_are_not_pages(viewer: httpx.Client) -> None:
    for path in ("/api/sentiments", "/docs/ingest"):
        assert "content-security-policy" not in viewer.get(path).headers


@pytest.mark.parametrize(
    ("tiles", "origin"),
    [
        (OSM_TILES, "https://tile.openstreetmap.org"),
        ("https://{s}.tiles.example.org/{z}/{x}/{y}.png", "https://*.tiles.example.org"),
        ("http://127.0.0.1:8080/osm/{z}/{x}/{y}.png?key=k", "http://127.0.0.1:8080"),
        ("", None),
    ],
)
def test_the_tiles_origin(tiles: str, origin: str | None) -> None:
    assert tile_origin(tiles) == origin
