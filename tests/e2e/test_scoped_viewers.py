"""Viewer tokens scoped to studies, through the gateway: a teaching assistant sees
only their studies' records, summaries, vlogs, exports and export page; another
study's record answers 404 as if absent; revocation takes effect within a second."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from pymongo import MongoClient

from services.common.research.tokens import REVOCATION_BOUND_SECONDS
from tests.conftest import FOLD_WAIT_SECONDS, Stack
from tests.media.conftest import h264_video
from tests.support import wait_until

CACHE_BOUND_SECONDS = 5.0


@dataclass
class World:
    studies: dict[str, str]  # "A"/"B" -> study id
    people: dict[str, str]  # "A"/"B"/"default" -> participant id
    sentiments: dict[str, str]  # -> a sentiment id of that participant
    vlogs: dict[str, str]  # -> a vlog id of that participant
    viewers: dict[str, dict[str, str]]  # "A", "B", "A+default" -> headers


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("scoped")
    studies = {"A": f"scope-a-{tag}", "B": f"scope-b-{tag}"}
    people = {"A": f"pa-{tag}", "B": f"pb-{tag}", "default": f"pd-{tag}"}
    writers: dict[str, dict[str, str]] = {}
    with stack.client("admin") as admin, stack.client() as phone:
        for key, study_id in studies.items():
            admin.post("/api/studies", json={"study_id": study_id, "name": key})
            [issued] = admin.post(
                f"/api/studies/{study_id}/participants", json={"user_ids": [people[key]]}
            ).json()["participants"]
            token = phone.post(
                "/api/enrol", json={"study_id": study_id, "code": issued["code"]}
            ).json()["token"]
            writers[key] = {"Authorization": f"Bearer {token}"}
        writers["default"] = {"Authorization": f"Bearer {stack.config.credentials.device}"}
        viewers = {}
        for name, scope in (
            ("A", [studies["A"]]),
            ("B", [studies["B"]]),
            ("A+default", [studies["A"], "default"]),
        ):
            minted = admin.post(
                "/api/viewer-tokens", json={"name": f"TA {name}", "study_ids": scope}
            )
            viewers[name] = {"Authorization": f"Bearer {minted.json()['token']}"}
    sentiments, vlogs = {}, {}
    for n, (key, headers) in enumerate(writers.items()):
        with httpx.Client(base_url=stack.gateway, headers=headers, timeout=60) as client:
            body = {"user_id": people[key], "emotion": "happy", "intensity": 0.4}
            sentiments[key] = client.post("/api/sentiments", json=body).json()["id"]
            client.post("/api/gps", json={"user_id": people[key], "latitude": 1, "longitude": 2})
            video = h264_video(folder / f"{key}.mp4", 40 + n)
            vlogs[key] = client.post(
                "/api/vlogs/upload",
                data={"user_id": people[key], "title": f"vlog {key}"},
                files={"video": (f"{key}.mp4", video, "video/mp4")},
            ).json()["vlog"]["_id"]
    return World(studies, people, sentiments, vlogs, viewers)


def client(stack: Stack, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=stack.gateway, headers=headers, timeout=60)


def test_a_study_viewer_sees_only_its_study_everywhere(stack: Stack, world: World) -> None:
    mine, theirs = world.people["A"], world.people["B"]
    with client(stack, world.viewers["A"]) as ta:
        who = ta.get("/api/v1/whoami").json()
        assert who["role"] == "viewer"
        assert who["study_ids"] == [world.studies["A"]]
        listed = ta.get("/api/sentiments", params={"limit": 1000}).json()
        assert {r["user_id"] for r in listed} == {mine}
        assert ta.get("/api/sentiments/count").json()["count"] == 1
        assert ta.get("/api/gps/count").json()["count"] == 1
        assert ta.get("/api/sentiments", params={"user_id": theirs}).json() == []
        streamed = ta.get("/api/gps/stream").text.splitlines()
        assert [json.loads(line)["user_id"] for line in streamed] == [mine]
        assert ta.get(f"/api/sentiments/{world.sentiments['A']}").status_code == 200
        assert ta.get(f"/api/sentiments/{world.sentiments['B']}").status_code == 404
        assert ta.get(f"/api/sentiments/{world.sentiments['default']}").status_code == 404

        totals = ta.get("/api/telemetry/summary").json()
        assert (totals["sentiments"], totals["gps_fixes"], totals["participants"]) == (1, 1, 1)
        people = ta.get("/api/telemetry/participants").json()["participants"]
        assert [p["user_id"] for p in people] == [mine]
        assert ta.get(f"/api/telemetry/participants/{theirs}").status_code == 404
        timeline = ta.get("/api/telemetry/timeline").json()
        assert sum(point["count"] for point in timeline) == 1

        vlogs = ta.get("/api/vlogs").json()
        assert [v["_id"] for v in vlogs] == [world.vlogs["A"]]
        assert ta.get("/api/vlogs/count").json()["count"] == 1
        assert [p["user_id"] for p in ta.get("/api/vlogs/participants").json()] == [mine]
        assert ta.get(f"/api/vlogs/{world.vlogs['A']}/download").status_code == 200
        for path in ("", "/download", "/thumbnail", "/play"):
            assert ta.get(f"/api/vlogs/{world.vlogs['B']}{path}").status_code == 404, path

        page = ta.get("/export")
        assert page.status_code == 200
        assert mine in page.text
        assert theirs not in page.text
        assert world.people["default"] not in page.text
        for kind in ("sentiments", "gps", "vlogs"):
            exported = ta.get(f"/api/export/{kind}.csv")
            assert exported.status_code == 200
            assert mine in exported.text
            assert theirs not in exported.text
        everything = ta.get("/api/export/all").text
        assert mine in everything
        assert theirs not in everything
        archive = zipfile.ZipFile(io.BytesIO(ta.get("/api/export/everything.zip").content))
        contents = b"".join(archive.read(name) for name in archive.namelist())
        assert mine.encode() in contents
        assert theirs.encode() not in contents
        videos = [name for name in archive.namelist() if name.endswith(".mp4")]
        assert len(videos) == 1


def test_a_study_viewers_summaries_come_from_its_studies_rollups(
    stack: Stack, world: World
) -> None:
    """Summaries for a study viewer are read from the rollup rows of its studies once
    folded, and agree with counting the records themselves."""
    with MongoClient(stack.config.mongodb_uri) as mongo:
        rows = mongo[stack.db_name]["telemetry_daily"]
        wait_until(
            lambda: rows.count_documents({"study": world.studies["A"]}) >= 2,
            FOLD_WAIT_SECONDS,
            "the fold to reach study A's records",
        )
        # A row only the rollups know: it shows that the rows answer, and only in A.
        ghost = {
            "kind": "sentiments",
            "study": world.studies["A"],
            "user_id": f"ghost-{world.studies['A']}",
            "day": "2021-01-04",
            "emotion": "calm",
            "records": 3,
            "intensity_sum": 1.5,
            "first": datetime(2021, 1, 4, 9, tzinfo=UTC),
            "last": datetime(2021, 1, 4, 10, tzinfo=UTC),
            "folded_to": datetime(2021, 1, 5, tzinfo=UTC),
        }
        rows.insert_one(ghost)
        from_rows = {"since": "2020-01-01"}  # whole days: the rollups answer
        from_records = {"since": "2019-12-31T00:00:01Z"}  # mid-day: the records
        try:
            with client(stack, world.viewers["A"]) as viewer:
                summary = viewer.get("/api/telemetry/summary", params=from_rows).json()
                counted = viewer.get("/api/telemetry/summary", params=from_records).json()
                assert summary["sentiments"] == counted["sentiments"] + 3 == 4
                assert summary["participants"] == 2
                listed = viewer.get("/api/telemetry/participants", params=from_rows).json()
                assert [p["user_id"] for p in listed["participants"]] == sorted(
                    [world.people["A"], ghost["user_id"]]
                )
        finally:
            rows.delete_one({"study": ghost["study"], "user_id": ghost["user_id"]})
    for name in ("A", "B", "A+default"):
        with client(stack, world.viewers[name]) as viewer:
            for path in ("/api/telemetry/summary", "/api/telemetry/timeline"):
                assert (
                    viewer.get(path, params=from_rows).json()
                    == viewer.get(path, params=from_records).json()
                ), (name, path)


def test_the_page_offers_a_study_selector_and_shows_the_studys_time(
    stack: Stack, world: World
) -> None:
    """A TA of several studies picks one on the page (and in every download link); the
    page shows times in that study's time zone, and a TA of one study always sees its
    zone. A study the credential does not cover is refused everywhere."""
    study_a, study_b = world.studies["A"], world.studies["B"]
    with stack.client("admin") as admin:
        changed = admin.patch(f"/api/studies/{study_a}", json={"time_zone": "Asia/Taipei"})
        assert changed.status_code == 200

    def shown_local(first_activity: str) -> str:
        instant = datetime.fromisoformat(first_activity.replace("Z", "+00:00"))
        return instant.astimezone(ZoneInfo("Asia/Taipei")).strftime("%Y-%m-%d %H:%M")

    with client(stack, world.viewers["A"]) as ta:
        page = ta.get("/export").text
        assert 'name="study_id"' not in page  # one study: nothing to choose
        assert "Times shown in <strong>Asia/Taipei</strong>" in page
        first = ta.get("/api/telemetry/summary").json()["first_activity"]
        assert shown_local(first) in page
        assert ta.get("/export", params={"study_id": study_b}).status_code == 403
        refused = ta.get("/api/sentiments", params={"study_id": study_b})
        assert refused.status_code == 403
        assert refused.json()["detail"]["field"] == "study_id"
    with client(stack, world.viewers["A+default"]) as ta:
        page = ta.get("/export").text
        assert 'name="study_id"' in page
        assert f'<option value="{study_a}"' in page
        assert '<option value="default"' in page
        assert f'<option value="{study_b}"' not in page
        assert "Times shown in <strong>UTC</strong>" in page  # two studies, none chosen
        chosen = ta.get("/export", params={"study_id": study_a}).text
        assert "Times shown in <strong>Asia/Taipei</strong>" in chosen
        assert f'<option value="{study_a}" selected>' in chosen
        assert world.people["A"] in chosen
        assert world.people["default"] not in chosen
        assert f"/api/export/sentiments.csv?study_id={study_a}" in chosen
        exported = ta.get("/api/export/sentiments.csv", params={"study_id": study_a}).text
        assert world.people["A"] in exported
        assert world.people["default"] not in exported
        only_default = ta.get("/api/sentiments/count", params={"study_id": "default"}).json()
        everything = ta.get("/api/sentiments/count").json()
        assert 0 < only_default["count"] == everything["count"] - 1


def test_a_viewer_of_default_sees_the_global_tokens_data(stack: Stack, world: World) -> None:
    with client(stack, world.viewers["A+default"]) as ta:
        ids = {
            r["_id"]
            for r in ta.get(
                "/api/sentiments",
                params={"user_id": world.people["default"]},
            ).json()
        }
        assert world.sentiments["default"] in ids
        assert ta.get(f"/api/sentiments/{world.sentiments['A']}").status_code == 200
        assert ta.get(f"/api/sentiments/{world.sentiments['B']}").status_code == 404
        assert ta.get(f"/api/vlogs/{world.vlogs['default']}").status_code == 200


def test_a_study_viewer_changes_nothing(stack: Stack, world: World) -> None:
    with client(stack, world.viewers["A"]) as ta:
        body = {"user_id": world.people["A"], "emotion": "sad", "intensity": 0.1}
        assert ta.post("/api/sentiments", json=body).status_code == 403
        assert ta.patch(f"/api/vlogs/{world.vlogs['A']}", json={"title": "x"}).status_code == 403
        assert ta.delete(f"/api/vlogs/{world.vlogs['A']}").status_code == 403
        study = world.studies["A"]
        assert ta.post(f"/api/studies/{study}/close").status_code == 403
        assert ta.patch(f"/api/studies/{study}", json={"name": "x"}).status_code == 403
        assert ta.post("/api/studies", json={"study_id": "ta-made", "name": "x"}).status_code == 403
        assert [s["study_id"] for s in ta.get("/api/studies").json()] == [study]
        assert ta.get("/api/viewer-tokens").status_code == 403
        assert ta.get("/api/v1/list_users").status_code == 403


def test_a_revoked_viewer_token_stops_everywhere(stack: Stack, world: World) -> None:
    with stack.client("admin") as admin:
        minted = admin.post(
            "/api/viewer-tokens", json={"name": "TA leaving", "study_ids": [world.studies["A"]]}
        ).json()
        headers = {"Authorization": f"Bearer {minted['token']}"}
        with client(stack, headers) as ta:
            paths = ("/api/sentiments", "/api/vlogs", "/export")
            assert all(ta.get(path).status_code == 200 for path in paths)
            assert admin.delete(f"/api/viewer-tokens/{minted['token_id']}").status_code == 200
            started = time.monotonic()
            pending = set(paths)
            while pending and time.monotonic() - started < 2 * CACHE_BOUND_SECONDS:
                pending = {path for path in pending if ta.get(path).status_code != 401}
                time.sleep(0.2)
            assert not pending, pending
            assert time.monotonic() - started <= REVOCATION_BOUND_SECONDS + 1
        listed = admin.get("/api/viewer-tokens").json()
        [mine] = [t for t in listed if t["token_id"] == minted["token_id"]]
        assert mine["last_used_at"] is not None


def test_a_forged_viewer_token_is_refused(stack: Stack, tmp_path: Path) -> None:
    headers = {"Authorization": "Bearer emv_" + "x" * 43}
    with client(stack, headers) as forged:
        for path in ("/api/sentiments", "/api/vlogs", "/export", "/api/export/all"):
            assert forged.get(path).status_code == 401, path
