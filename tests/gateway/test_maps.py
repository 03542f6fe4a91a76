"""A participant's GPS track on a map in a real browser: Leaflet served by the gateway
itself on tiles from a local tile server, a colour per local day, start and end
markers and a day slider; and the offline drawing when tiles are turned off."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import Stack, stack_of_its_own
from tests.support import bearer, free_port, policy_refusals, viewer_in_chromium

# Processes of its own (see pyproject.toml markers).
pytestmark = pytest.mark.slow


TILE_PORT = free_port()


class TileServer:
    """Answers every /z/x/y.png with a small PNG and counts the requests."""

    def __init__(self, port: int) -> None:
        picture = io.BytesIO()
        Image.new("RGB", (256, 256), (220, 235, 220)).save(picture, "PNG")
        tile = picture.getvalue()
        self.requests: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(tile)))
                self.end_headers()
                self.wfile.write(tile)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tile_server() -> Iterator[TileServer]:
    running = TileServer(TILE_PORT)
    yield running
    running.close()


tiled_stack = stack_of_its_own(
    "emogo_maps", EMOGO_MAP_TILES=f"http://127.0.0.1:{TILE_PORT}/{{z}}/{{x}}/{{y}}.png"
)

DAYS = 3
FIXES_PER_DAY = 12


def send_track(stack: Stack) -> str:
    """A participant's fixes on three UTC days, walking east a little each hour."""
    user_id = f"walker-{uuid.uuid4().hex[:8]}"
    start = datetime(2026, 5, 4, 8, tzinfo=UTC)
    fixes = [
        {
            "user_id": user_id,
            "latitude": 25.03 + day * 0.01,
            "longitude": 121.56 + hour * 0.002,
            "timestamp": (start + timedelta(days=day, hours=hour)).isoformat(),
        }
        for day in range(DAYS)
        for hour in range(FIXES_PER_DAY)
    ]
    with httpx.Client(base_url=stack.gateway, headers=bearer("device"), timeout=30) as phone:
        assert phone.post("/api/gps/batch", json=fixes).json()["stored"] == len(fixes)
    return user_id


@pytest.mark.browser
def test_the_track_on_tiles_from_a_local_server(
    tiled_stack: Stack, tile_server: TileServer
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    user_id = send_track(tiled_stack)
    with playwright.sync_playwright() as driver:
        browser, page = viewer_in_chromium(driver)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        refused = policy_refusals(page)
        opened = page.goto(f"{tiled_stack.gateway}/export/map?user_id={user_id}")
        assert (
            f"img-src 'self' data: http://127.0.0.1:{TILE_PORT};"
            in (opened.headers["content-security-policy"])
        )
        page.wait_for_selector('#map[data-mode="tiles"]', timeout=15_000)
        assert tile_server.requests, "no tile was asked for"
        # Leaflet and the page's own script came from the gateway, not from anywhere else.
        sources = page.evaluate("[...document.scripts].map(s => s.src).filter(Boolean)")
        assert sources == [
            f"{tiled_stack.gateway}/static/leaflet/leaflet.js",
            f"{tiled_stack.gateway}/static/emogo/map.js",
        ]
        assert page.evaluate("[...document.scripts].filter(s => !s.src && !s.type).length") == 0
        assert page.locator("path.track-line").count() == DAYS
        colours = page.locator("path.track-line").evaluate_all(
            "lines => lines.map(l => l.getAttribute('stroke'))"
        )
        assert len(set(colours)) == DAYS  # one colour per day
        assert page.locator("path.track-start").count() == 1
        assert page.locator("path.track-end").count() == 1
        assert page.locator("#fallback").is_hidden()
        # The slider shows one day at a time.
        page.locator("#day").fill("2")
        assert page.get_attribute("#map", "data-shown-days") == "2026-05-05"
        assert page.locator("path.track-line").count() == 1
        assert page.text_content("#day-shown") == "2026-05-05"
        page.locator("#day").fill("0")
        assert page.locator("path.track-line").count() == DAYS
        assert errors == []
        assert refused == []
        browser.close()


@pytest.mark.browser
def test_the_offline_drawing_when_tiles_are_off(stack: Stack, viewer: httpx.Client) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    user_id = send_track(stack)
    fixes = viewer.get("/api/gps/count", params={"user_id": user_id}).json()["count"]
    with playwright.sync_playwright() as driver:
        browser, page = viewer_in_chromium(driver)
        # From the export page: the participant's Map link.
        page.goto(f"{stack.gateway}/export?user_id={user_id}")
        page.click("a.map-link")
        page.wait_for_selector('#map[data-mode="fallback"]', state="attached")
        assert page.get_attribute("#map", "data-why") == "tiles-off"
        assert page.locator("#map").is_hidden()
        assert page.locator("#fallback svg polyline").is_visible()
        assert page.get_attribute("#map", "data-fixes") == str(fixes)
        per_day = page.locator(".track-days tbody tr").evaluate_all(
            "rows => rows.map(r => [r.dataset.day, Number(r.cells[2].innerText)])"
        )
        assert per_day == [
            ["2026-05-04", FIXES_PER_DAY],
            ["2026-05-05", FIXES_PER_DAY],
            ["2026-05-06", FIXES_PER_DAY],
        ]
        browser.close()


def test_the_map_page_needs_a_participant_and_a_reader(stack: Stack, viewer: httpx.Client) -> None:
    missing = viewer.get("/export/map")
    assert missing.status_code in (400, 422)
    assert "user_id" in missing.text
    with httpx.Client(base_url=stack.gateway) as anonymous:
        assert anonymous.get("/export/map?user_id=someone").status_code == 401
    leaflet = viewer.get("/static/leaflet/leaflet.js")
    assert leaflet.status_code == 200
    assert "javascript" in leaflet.headers["content-type"]
    assert viewer.get("/static/leaflet/../../../../etc/passwd").status_code == 404


def test_the_map_shows_the_newest_two_weeks_unless_asked(
    stack: Stack, viewer: httpx.Client
) -> None:
    user_id = f"long-{uuid.uuid4().hex[:8]}"
    first = datetime(2026, 2, 1, 12, tzinfo=UTC)
    fixes = [
        {
            "user_id": user_id,
            "latitude": 25.0,
            "longitude": 121.5 + day / 100,
            "timestamp": (first + timedelta(days=day)).isoformat(),
        }
        for day in range(20)
    ]
    with httpx.Client(base_url=stack.gateway, headers=bearer("device"), timeout=30) as phone:
        assert phone.post("/api/gps/batch", json=fixes).json()["stored"] == 20

    def shown(**params: object) -> tuple[str, str]:
        page = viewer.get("/export/map", params={"user_id": user_id, **params})
        assert page.status_code == 200
        days = page.text.split('data-days="')[1].split('"')[0]
        first_row = page.text.split('<tr data-day="')[1].split('"')[0]
        return days, first_row

    assert shown() == ("14", "2026-02-07")  # the newest 14 days with fixes
    assert shown(days=0) == ("20", "2026-02-01")
    assert shown(days=60) == ("20", "2026-02-01")
    assert shown(since="2026-02-03", until="2026-02-05") == ("2", "2026-02-03")
    refused = viewer.get("/export/map", params={"user_id": user_id, "days": -1})
    assert refused.status_code == 422
    assert "days" in refused.text
