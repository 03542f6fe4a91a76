"""The export page and bulk exports through the real stack: access, counts, filters,
formats, the ZIP; and a real browser that plays, seeks and downloads."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import Stack
from tests.ingest.conftest import new_participant
from tests.media.conftest import h264_video
from tests.support import REPO, log_entries, policy_refusals, viewer_in_chromium

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def study(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One participant with sentiments over three days, a walk, and a video."""
    who = new_participant()
    video = h264_video(tmp_path_factory.mktemp("export") / "walk.mp4", 7)
    with stack.client("device") as device:
        sentiments = [
            {
                "user_id": who,
                "emotion": ("happy", "calm", "sad")[i % 3],
                "intensity": round(0.1 + (i % 9) / 10, 2),
                "timestamp": f"2025-03-{1 + i % 3:02d}T0{i % 10}:15:00Z",
                "note": '=HYPERLINK("http://evil")' if i == 0 else f'note, with "quotes" {i}',
            }
            for i in range(24)
        ]
        assert device.post("/api/sentiments/batch", json=sentiments).json()["stored"] == 24
        fixes = [
            {
                "user_id": who,
                "latitude": 25.0170 + i * 0.0004,
                "longitude": 121.5395 + (i % 5) * 0.0003,
                "timestamp": f"2025-03-02T10:{i:02d}:00Z",
            }
            for i in range(20)
        ]
        assert device.post("/api/gps/batch", json=fixes).json()["stored"] == 20
        uploaded = device.post(
            "/api/vlogs/upload",
            data={"user_id": who, "title": "Walk on campus", "timestamp": "2025-03-02T10:30:00Z"},
            files={"video": ("walk.mp4", video, "video/mp4")},
        )
        assert uploaded.status_code == 201, uploaded.text
    return {"user_id": who, "vlog": uploaded.json()["vlog"], "video": video}


def test_the_page_needs_a_reader(stack: Stack) -> None:
    with stack.client() as anonymous, stack.client("device") as device:
        refused = anonymous.get("/export")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert device.get("/export").status_code == 403
        assert anonymous.get("/api/export/everything.zip").status_code == 401
        assert anonymous.get("/api/export/sentiments.csv").status_code == 401


def test_the_page_shows_what_the_apis_count(stack: Stack, study: dict) -> None:
    who = study["user_id"]
    with stack.client("viewer") as viewer:
        page = viewer.get("/export", params={"user_id": who})
        assert page.status_code == 200
        html = page.text
        assert 'data-total="sentiments">24<' in html
        assert 'data-total="gps">20<' in html
        assert 'data-total="vlogs">1<' in html
        assert "<svg" in html  # the charts and the track
        assert "Walk on campus" in html
        assert study["vlog"]["download_url"] in html
        assert "cdn" not in html.lower()
        assert "<script" not in html.lower()
        # A date window narrows everything on the page, links included.
        narrowed = viewer.get(
            "/export", params={"user_id": who, "since": "2025-03-02", "until": "2025-03-03"}
        ).text
        assert 'data-total="sentiments">8<' in narrowed
        assert "since=2025-03-02" in narrowed
        empty = viewer.get("/export", params={"user_id": who, "since": "2030-01-01"}).text
        assert "No vlogs match these filters" in empty
        assert viewer.get("/export", params={"since": "yesterday"}).status_code == 422
        # A link from an e-mail or a bookmark may carry parameters of its own.
        tracked = viewer.get("/export", params={"user_id": who, "utm_source": "mail"})
        assert tracked.status_code == 200
        assert 'data-total="sentiments">24<' in tracked.text
        # The APIs still refuse what they do not know.
        assert (
            viewer.get("/api/export/sentiments.csv", params={"utm_source": "x"}).status_code == 422
        )


def test_csv_round_trips_and_is_formula_safe(stack: Stack, study: dict) -> None:
    with stack.client("viewer") as viewer:
        response = viewer.get("/api/export/sentiments.csv", params={"user_id": study["user_id"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 24
    notes = {row["note"] for row in rows}
    assert '\'=HYPERLINK("http://evil")' in notes
    assert 'note, with "quotes" 5' in notes
    assert all(row["timestamp"].endswith("Z") for row in rows)


def test_exports_follow_the_filters(stack: Stack, study: dict) -> None:
    who = study["user_id"]
    window = {"user_id": who, "since": "2025-03-02", "until": "2025-03-03"}
    with stack.client("viewer") as viewer:
        counted = viewer.get("/api/sentiments/count", params=window).json()["count"]
        as_json = viewer.get("/api/export/sentiments.json", params=window).json()
        lines = viewer.get("/api/export/sentiments.ndjson", params=window).text.splitlines()
        everything = viewer.get("/api/export/all", params={"user_id": who}).json()
    assert counted == len(as_json) == len(lines) == 8
    assert {r["user_id"] for r in as_json} == {who}
    assert set(everything) == {
        "export_date", "total_vlogs", "total_sentiments", "total_gps_coordinates", "data"
    }  # fmt: skip
    assert (everything["total_sentiments"], everything["total_gps_coordinates"]) == (24, 20)
    assert everything["total_vlogs"] == len(everything["data"]["vlogs"]) == 1
    assert len(everything["data"]["gps_coordinates"]) == 20


def verify_zip(data: bytes, study: dict) -> dict:
    archive = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["counts"] == {"sentiments": 24, "gps": 20, "vlogs": 1}
    assert manifest["filters"]["user_id"] == study["user_id"]
    for name, facts in manifest["files"].items():
        content = archive.read(name)
        assert hashlib.sha256(content).hexdigest() == facts["sha256"], name
        assert len(content) == facts["bytes"]
    videos = [n for n in archive.namelist() if n.startswith("videos/")]
    assert videos == [
        f"videos/{study['user_id']}/2025-03-02_Walk_on_campus_{study['vlog']['_id'][-6:]}.mp4"
    ]
    assert archive.read(videos[0]) == study["video"]
    assert "README.txt" in archive.namelist()
    return manifest


def test_the_zip_holds_everything(stack: Stack, study: dict) -> None:
    with stack.client("viewer") as viewer:
        response = viewer.get("/api/export/everything.zip", params={"user_id": study["user_id"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    verify_zip(response.content, study)


def test_the_zip_reads_each_kind_once_and_holds_what_the_single_exports_hold(
    stack: Stack, study: dict
) -> None:
    """Each kind's CSV, NDJSON and Parquet (and both daily files) come from one read of
    the ingest service, yet each file is the one its own export would give."""
    who = study["user_id"]
    request_id = f"zip-reads-{uuid.uuid4().hex}"
    with stack.client("viewer") as viewer:
        response = viewer.get(
            "/api/export/everything.zip",
            params={"user_id": who},
            headers={"X-Request-ID": request_id},
        )
        assert response.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        for kind in ("sentiments", "gps", "daily"):
            for fmt in ("csv", "ndjson", "parquet"):
                if (kind, fmt) == ("daily", "ndjson"):
                    continue  # the ZIP holds the daily table as CSV and Parquet
                single = viewer.get(f"/api/export/{kind}.{fmt}", params={"user_id": who})
                assert single.status_code == 200
                held = archive.read(f"{kind}.{fmt}")
                if fmt == "parquet":  # its metadata carries the time of export
                    assert (
                        pq.read_table(io.BytesIO(held)).to_pylist()
                        == pq.read_table(io.BytesIO(single.content)).to_pylist()
                    ), kind
                else:
                    assert held == single.content, f"{kind}.{fmt}"
    reads = Counter(
        line["path"]
        for line in log_entries(stack.config.log_dir / "ingest.log")
        if line.get("request_id") == request_id and line.get("logger") == "emogo.access"
    )
    assert reads == {
        # One record at most, before the first byte: does the credential cover the
        # filters (a refusal must be a 403, not a cut ZIP)?
        "/api/sentiments": 1,
        "/api/sentiments/stream": 1,
        "/api/gps/stream": 1,
        "/api/telemetry/daily": 1,
        "/api/telemetry/summary": 1,  # the daily table's emotion columns
    }, reads


@pytest.mark.browser
def test_in_a_real_browser(stack: Stack, study: dict) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    who = study["user_id"]
    with stack.client("viewer") as viewer:
        counts = {
            kind: viewer.get(f"/api/{kind}/count", params={"user_id": who}).json()["count"]
            for kind in ("sentiments", "gps", "vlogs")
        }
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser, page = viewer_in_chromium(
            driver,
            accept_downloads=True,
            viewport={"width": 390, "height": 844},  # a phone-width screen
        )
        refused = policy_refusals(page)
        page.goto(f"{stack.gateway}/export?user_id={who}")
        for kind in ("sentiments", "gps", "vlogs"):
            assert page.text_content(f'[data-total="{kind}"]') == str(counts[kind])
        # Phone width: nothing forces the page wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        played = page.evaluate(
            """async () => {
                const video = document.querySelector('video');
                video.muted = true;
                await video.play();
                await new Promise(r => setTimeout(r, 300));
                video.currentTime = 2.0;
                await new Promise(r => video.addEventListener('seeked', r, {once: true}));
                return {error: video.error && video.error.code, time: video.currentTime,
                        duration: video.duration};
            }"""
        )
        assert played["error"] is None
        assert played["time"] == pytest.approx(2.0, abs=0.1)
        assert played["duration"] == pytest.approx(3.0, abs=0.1)
        page.screenshot(path=str(ARTIFACTS / "export-page.png"), full_page=True)
        with page.expect_download() as clicked:
            page.click(f'[data-vlog-id="{study["vlog"]["_id"]}"] a.button')
        downloaded = Path(clicked.value.path()).read_bytes()
        assert hashlib.sha256(downloaded).hexdigest() == study["vlog"]["sha256"]
        assert clicked.value.suggested_filename == "Walk on campus.mp4"
        with page.expect_download() as clicked:
            page.click("text=Everything (ZIP")
        verify_zip(Path(clicked.value.path()).read_bytes(), study)
        # The participant-day table as Parquet, from its link, opened by pyarrow.
        with page.expect_download() as clicked:
            page.click('a[href^="/api/export/daily.parquet"]')
        assert clicked.value.suggested_filename.startswith("emogo-daily-v1.0-")
        daily = pq.read_table(clicked.value.path()).to_pylist()
        assert {row["user_id"] for row in daily} == {who}
        assert sum(row["sentiments"] for row in daily) == counts["sentiments"]
        assert sum(row["gps_fixes"] for row in daily) == counts["gps"]
        # The thumbnails, charts and video played under the page's policy.
        assert refused == []
        browser.close()
