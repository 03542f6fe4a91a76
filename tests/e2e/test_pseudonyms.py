"""A study that shows its viewers pseudonyms and coarsened GPS, through the gateway:
a teaching assistant never receives a real participant id (pages, APIs, every export
format, ZIP entry names, download names, the webhook) nor a fix finer than the grid,
filters by the pseudonyms they were shown, and the admin still sees everything."""

from __future__ import annotations

import io
import json
import math
import re
import uuid
import zipfile
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pyarrow.parquet as pq
import pytest
from pymongo import MongoClient

from services.common.research.grid import METRES_PER_DEGREE, coarsened, grid_steps
from services.common.research.pseudonyms import pseudonym
from tests.conftest import Stack
from tests.media.conftest import h264_video
from tests.support import enrolled, wait_until

GRID_M = 1000
# Fixes a few hundred metres apart in Taipei: one grid cell or two, never the exact place.
PLACES = [(25.033964, 121.564468), (25.036012, 121.567301), (25.047924, 121.517081)]
PSEUDONYM = re.compile(r"anon-[a-z2-7]{12}")


@dataclass
class World:
    study: str
    plain_study: str
    people: list[str]  # real ids in the pseudonymous study
    plain_person: str  # a participant of the other study
    sentiment: str
    gps_fix: str
    vlog: str
    viewer: dict[str, str]  # covers the pseudonymous study only
    both: dict[str, str]  # covers both studies


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    tag = uuid.uuid4().hex[:8]
    study, plain_study = f"hidden-{tag}", f"plain-{tag}"
    people = [f"alice.real.{tag}", f"bob.real.{tag}"]
    plain_person = f"carol.real.{tag}"
    with stack.client("admin") as admin:
        made = admin.post(
            "/api/studies",
            json={"study_id": study, "name": "Hidden", "pseudonyms": True, "gps_grid_m": GRID_M},
        )
        assert made.status_code == 201, made.text
        assert (made.json()["pseudonyms"], made.json()["gps_grid_m"]) == (True, GRID_M)
        admin.post("/api/studies", json={"study_id": plain_study, "name": "Plain"})
        viewer = admin.post("/api/viewer-tokens", json={"name": "TA", "study_ids": [study]})
        both = admin.post(
            "/api/viewer-tokens", json={"name": "TA both", "study_ids": [study, plain_study]}
        )
    writers = {**enrolled(stack, study, people), **enrolled(stack, plain_study, [plain_person])}
    ids: dict[str, str] = {}
    folder = tmp_path_factory.mktemp("pseudonyms")
    for n, user_id in enumerate([*people, plain_person]):
        with httpx.Client(base_url=stack.gateway, headers=writers[user_id], timeout=60) as mine:
            # The participant's own id, and another's, in every string a phone can send,
            # as people and apps write them: free text, place names, the phone's own ids.
            other = people[1 - n] if n < 2 else people[0]
            note = {
                "emotion": "calm",
                "intensity": 0.5,
                "note": f"I am {user_id}, with {other}",
                "context": f"with {other}"[:64],
                "client_id": f"{user_id}-mood-1",
            }
            ids.setdefault("sentiment", mine.post("/api/sentiments", json=note).json()["id"])
            for step, (latitude, longitude) in enumerate(PLACES):
                fix = {"latitude": latitude, "longitude": longitude, "accuracy": 4.5}
                named = {"location_name": f"home of {user_id}", "client_id": f"{user_id}-g{step}"}
                posted = mine.post("/api/gps", json={**fix, "altitude": 12.0, **named})
                assert posted.status_code == 201, posted.text
                ids.setdefault("gps_fix", posted.json()["id"])
            video = h264_video(folder / f"{n}.mp4", 60 + n)
            uploaded = mine.post(
                "/api/vlogs/upload",
                data={"title": f"diary of {user_id}", "description": f"by {user_id} for {other}"},
                files={"video": (f"{user_id}_day1.mp4", video, "video/mp4")},
            )
            assert uploaded.status_code == 201, uploaded.text
            ids.setdefault("vlog", uploaded.json()["vlog"]["_id"])
            # The seed's vlog by link: its address names them too.
            linked = mine.post(
                "/api/vlogs",
                json={
                    "video_url": f"https://videos.example.org/{user_id}/day2.mp4",
                    "title": f"{user_id} day 2",
                },
            )
            assert linked.status_code == 201, linked.text
    return World(
        study=study,
        plain_study=plain_study,
        people=people,
        plain_person=plain_person,
        sentiment=ids["sentiment"],
        gps_fix=ids["gps_fix"],
        vlog=ids["vlog"],
        viewer={"Authorization": f"Bearer {viewer.json()['token']}"},
        both={"Authorization": f"Bearer {both.json()['token']}"},
    )


def _client(stack: Stack, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=stack.gateway, headers=headers, timeout=120)


def _pseudonyms(stack: Stack, world: World) -> dict[str, str]:
    """Real id -> pseudonym, as the admin's participant list tells them."""
    with stack.client("admin") as admin:
        listed = admin.get(f"/api/studies/{world.study}/participants").json()
    return {p["user_id"]: p["pseudonym"] for p in listed}


def _parquet_text(data: bytes) -> str:
    """A Parquet file's values and metadata as text (its pages are compressed)."""
    table = pq.read_table(io.BytesIO(data))
    footer = pq.read_metadata(io.BytesIO(data)).metadata
    return json.dumps(table.to_pylist(), default=str) + str(footer)


def _everything_a_viewer_reads(ta: httpx.Client, world: World, alias: str) -> dict[str, str]:
    """Every page, API answer and export a viewer can get, headers included."""
    paths = [
        "/api/sentiments?limit=1000",
        f"/api/sentiments?user_id={alias}",
        f"/api/sentiments/{world.sentiment}",
        "/api/sentiments/stream",
        "/api/gps?limit=1000",
        f"/api/gps/{world.gps_fix}",
        "/api/gps/stream",
        "/api/telemetry/participants",
        "/api/telemetry/participants?limit=1",
        f"/api/telemetry/participants/{alias}",
        "/api/telemetry/activity",
        "/api/telemetry/compliance",
        "/api/telemetry/compliance.csv",
        "/api/vlogs",
        f"/api/vlogs/{world.vlog}",
        "/api/vlogs/participants",
        "/api/vlogs/activity",
        f"/api/vlogs/{world.vlog}/download",
        f"/api/vlogs/{world.vlog}/play",
        f"/api/vlogs/download/{world.vlog}.mp4",
        f"/api/studies/{world.study}/participants",
        "/export",
        f"/export?user_id={alias}",
        f"/export/map?user_id={alias}",
        "/api/export/all",
        *(
            f"/api/export/{kind}.{form}"
            for kind in ("sentiments", "gps", "vlogs", "daily")
            for form in ("csv", "json", "ndjson")
        ),
    ]
    seen = {}
    for path in paths:
        answer = ta.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        body = "" if "/download" in path or "/play" in path else answer.text
        seen[path] = json.dumps(dict(answer.headers)) + body
    return seen


def test_a_viewer_never_receives_a_real_id(stack: Stack, world: World) -> None:
    names = _pseudonyms(stack, world)
    alias = names[world.people[0]]
    assert PSEUDONYM.fullmatch(alias)
    assert names[world.people[1]] != alias
    with _client(stack, world.viewer) as ta:
        seen = _everything_a_viewer_reads(ta, world, alias)
        archive = zipfile.ZipFile(io.BytesIO(ta.get("/api/export/everything.zip").content))
    seen["zip entry names"] = "\n".join(archive.namelist())
    for name in archive.namelist():
        if name.endswith(".parquet"):
            seen[f"zip {name}"] = _parquet_text(archive.read(name))
        elif not name.endswith(".mp4"):
            seen[f"zip {name}"] = archive.read(name).decode()
    with _client(stack, world.viewer) as ta:
        for kind in ("sentiments", "gps", "vlogs", "daily"):
            seen[f"{kind}.parquet"] = _parquet_text(ta.get(f"/api/export/{kind}.parquet").content)
    for where, text in seen.items():
        for real in world.people:
            assert real not in text, f"{real} in {where}"
    # The pseudonym stands in everywhere a participant is named.
    for where in (
        "/api/sentiments?limit=1000",
        "/api/telemetry/participants",
        "/api/vlogs/participants",
        "/export",
        "/api/export/gps.csv",
        "/api/export/daily.csv",
        "daily.parquet",
        "zip entry names",
        f"/api/studies/{world.study}/participants",
    ):
        assert alias in seen[where], where
    assert f"videos/{alias}/" in seen["zip entry names"]
    with _client(stack, world.viewer) as ta:
        download = ta.get(f"/api/vlogs/{world.vlog}/download")
    assert f"diary of {alias}" in unquote(download.headers["content-disposition"])
    assert f"I am {alias}" in seen[f"/api/sentiments/{world.sentiment}"]
    # An opaque phone id is a keyed digest: stable, so a resent record is still told apart.
    with _client(stack, world.viewer) as ta:
        one, again = (ta.get(f"/api/sentiments/{world.sentiment}").json() for _ in range(2))
    assert one["client_id"].startswith("cid-")
    assert again["client_id"] == one["client_id"]


def test_a_viewer_filters_by_pseudonym_and_a_real_id_finds_nothing(
    stack: Stack, world: World
) -> None:
    names = _pseudonyms(stack, world)
    alias, real = names[world.people[0]], world.people[0]
    with _client(stack, world.both) as ta:
        mine = ta.get("/api/sentiments", params={"user_id": alias}).json()
        assert [r["user_id"] for r in mine] == [alias]
        assert ta.get("/api/gps/count", params={"user_id": alias}).json()["count"] == 3
        # The uploaded one and the one by link.
        assert ta.get("/api/vlogs/count", params={"user_id": alias}).json()["count"] == 2
        one = ta.get(f"/api/telemetry/participants/{alias}").json()
        assert (one["user_id"], one["sentiments"], one["gps_fixes"]) == (alias, 1, 3)
        # Guessing a real id confirms nothing.
        assert ta.get("/api/sentiments", params={"user_id": real}).json() == []
        assert ta.get("/api/gps/count", params={"user_id": real}).json()["count"] == 0
        assert ta.get(f"/api/telemetry/participants/{real}").status_code == 404
        # A study without pseudonyms is read by its ids as before.
        plain = ta.get("/api/sentiments", params={"user_id": world.plain_person}).json()
        assert [r["user_id"] for r in plain] == [world.plain_person]
        people = ta.get("/api/telemetry/participants").json()["participants"]
        assert {p["user_id"] for p in people} == {*names.values(), world.plain_person}
        # Pages follow the pseudonyms, and walking them shows each participant once.
        walked, cursor = [], None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = ta.get("/api/telemetry/participants", params=params).json()
            walked += [p["user_id"] for p in page["participants"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == sorted({*names.values(), world.plain_person})


def test_the_admin_sees_real_ids_and_the_exact_fixes(stack: Stack, world: World) -> None:
    with stack.client("admin") as admin:
        mine = admin.get("/api/sentiments", params={"user_id": world.people[0]}).json()
        assert [r["note"] for r in mine] == [f"I am {world.people[0]}, with {world.people[1]}"]
        fixes = admin.get("/api/gps", params={"user_id": world.people[0]}).json()
        assert sorted((f["latitude"], f["longitude"]) for f in fixes) == sorted(PLACES)
        assert {f["accuracy"] for f in fixes} == {4.5}
        vlogs = admin.get("/api/vlogs", params={"user_id": world.people[0]}).json()
        assert sorted(v["title"] for v in vlogs) == [
            f"{world.people[0]} day 2",
            f"diary of {world.people[0]}",
        ]
        [linked] = [v for v in vlogs if not v["has_file"]]
        assert linked["video_url"] == f"https://videos.example.org/{world.people[0]}/day2.mp4"
        archive = zipfile.ZipFile(
            io.BytesIO(
                admin.get("/api/export/everything.zip", params={"study_id": world.study}).content
            )
        )
        assert f"videos/{world.people[0]}/" in "\n".join(archive.namelist())
        assert json.loads(archive.read("manifest.json"))["protections"] == {}


def test_a_viewer_sees_gps_on_the_grid(stack: Stack, world: World) -> None:
    with _client(stack, world.viewer) as ta:
        fixes = ta.get("/api/gps", params={"limit": 1000}).json()
        assert len(fixes) == 3 * len(world.people)
        lat_step, _ = grid_steps(GRID_M, 25.0)
        for fix in fixes:
            latitude, longitude = fix["latitude"], fix["longitude"]
            assert abs(latitude / lat_step - round(latitude / lat_step)) < 1e-4
            _, lon_step = grid_steps(GRID_M, latitude)
            assert abs(longitude / lon_step - round(longitude / lon_step)) < 1e-4
            assert fix["accuracy"] is None
            assert fix["altitude"] is None
            # Within half a cell's diagonal of one of the real places, never on one.
            nearest = min(
                math.dist(
                    (latitude * METRES_PER_DEGREE, longitude * METRES_PER_DEGREE * 0.906),
                    (lat * METRES_PER_DEGREE, lon * METRES_PER_DEGREE * 0.906),
                )
                for lat, lon in PLACES
            )
            assert 0 < nearest <= GRID_M * 0.75
        assert {(f["latitude"], f["longitude"]) for f in fixes} <= {
            coarsened(lat, lon, GRID_M) for lat, lon in PLACES
        }
        csv_rows = ta.get("/api/export/gps.csv").text
        for latitude, longitude in PLACES:
            assert str(latitude) not in csv_rows
            assert str(longitude) not in csv_rows
        boxed = ta.get("/api/gps", params={"bbox": "121.5,25.0,121.6,25.1"})
        assert boxed.status_code == 422
        [problem] = boxed.json()["detail"]["errors"]
        assert problem["field"] == "bbox"
        assert world.study in problem["reason"]
    # A viewer of both studies: the box answers with the other study's exact fixes only.
    with _client(stack, world.both) as ta:
        boxed = ta.get("/api/gps", params={"bbox": "121.5,25.0,121.6,25.1", "limit": 1000})
        assert boxed.status_code == 200
        assert {f["user_id"] for f in boxed.json()} == {world.plain_person}
        assert {(f["latitude"], f["longitude"]) for f in boxed.json()} == set(PLACES)


def test_exports_say_which_protections_applied(stack: Stack, world: World) -> None:
    expected = {
        world.study: [
            "participant ids replaced by pseudonyms",
            f"GPS fixes rounded to a {GRID_M} m grid, without accuracy or altitude",
        ]
    }
    with _client(stack, world.both) as ta:
        archive = zipfile.ZipFile(io.BytesIO(ta.get("/api/export/everything.zip").content))
        assert json.loads(archive.read("manifest.json"))["protections"] == expected
        assert "protections" in archive.read("README.txt").decode()
        assert ta.get("/api/export/all").json()["protections"] == expected
        hidden_only = ta.get("/api/export/gps.parquet", params={"study_id": world.study})
        footer = pq.read_metadata(io.BytesIO(hidden_only.content)).metadata
        assert json.loads(footer[b"emogo.export"])["protections"] == expected
        plain = ta.get("/api/export/all", params={"study_id": world.plain_study}).json()
        assert "protections" not in plain
        only_plain = ta.get("/api/export/everything.zip", params={"study_id": world.plain_study})
        manifest = zipfile.ZipFile(io.BytesIO(only_plain.content)).read("manifest.json")
        assert json.loads(manifest)["protections"] == {}


def test_pseudonyms_are_keyed_per_study_and_stable() -> None:
    first, second = "11" * 32, "22" * 32
    assert pseudonym(first, "P001") == pseudonym(first, "P001")
    assert pseudonym(first, "P001") != pseudonym(second, "P001")
    assert pseudonym(first, "P001") != pseudonym(first, "P002")
    assert PSEUDONYM.fullmatch(pseudonym(first, "P001"))


def test_the_grid_settings_are_checked(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    with stack.client("admin") as admin:
        for grid in (5, -1, 200_000):
            answer = admin.post(
                "/api/studies", json={"study_id": f"grid-{tag}", "name": "G", "gps_grid_m": grid}
            )
            assert answer.status_code in (400, 422), grid
            assert "gps_grid_m" in answer.text
        made = admin.post("/api/studies", json={"study_id": f"grid-{tag}", "name": "G"}).json()
        assert (made["pseudonyms"], made["gps_grid_m"]) == (False, None)
        changed = admin.patch(
            f"/api/studies/grid-{tag}", json={"pseudonyms": True, "gps_grid_m": 100}
        ).json()
        assert (changed["pseudonyms"], changed["gps_grid_m"]) == (True, 100)
        cleared = admin.patch(f"/api/studies/grid-{tag}", json={"gps_grid_m": 0}).json()
        assert cleared["gps_grid_m"] is None
        assert "pseudonym_key" not in json.dumps(cleared)


def test_coarsening_puts_every_fix_on_the_grid() -> None:
    for latitude, longitude in [
        *PLACES,
        (59.9, 10.7),
        (-33.9, 151.2),
        (0.0, 179.9999),
        (10.0, -179.9999),
    ]:
        for grid in (10, 100, 1000, 10_000):
            lat, lon = coarsened(latitude, longitude, grid)
            lat_step, _ = grid_steps(grid, latitude)
            _, lon_step = grid_steps(grid, lat)
            assert abs(lat / lat_step - round(lat / lat_step)) < 1e-3
            assert abs(lon / lon_step - round(lon / lon_step)) < 1e-3
            assert abs(lat - latitude) <= lat_step / 2 + 1e-7
            assert -180.0 <= lon <= 180.0


def test_the_global_viewer_token_sees_pseudonyms_too(stack: Stack, world: World) -> None:
    names = _pseudonyms(stack, world)
    alias = names[world.people[0]]
    with stack.client("viewer") as viewer:
        mine = viewer.get("/api/sentiments", params={"user_id": alias}).json()
        assert [r["note"] for r in mine] == [f"I am {alias}, with {names[world.people[1]]}"]
        assert viewer.get("/api/sentiments", params={"user_id": world.people[0]}).json() == []
        hidden = viewer.get("/api/gps", params={"study_id": world.study, "limit": 1000}).json()
        assert {f["user_id"] for f in hidden} == set(_pseudonyms(stack, world).values())
        assert all(f["accuracy"] is None for f in hidden)


def test_a_withdrawal_with_deletion_forgets_the_pseudonym(stack: Stack, world: World) -> None:
    real = world.people[1]
    alias = _pseudonyms(stack, world)[real]
    with MongoClient(stack.config.mongodb_uri) as mongo:
        noted = mongo[stack.db_name]["pseudonyms"]
        assert noted.count_documents({"study_id": world.study, "user_id": real}) == 1
        with stack.client("admin") as admin:
            withdrawn = admin.post(
                f"/api/studies/{world.study}/participants/{real}/withdraw",
                json={"delete_data": True},
                timeout=120,
            )
        assert withdrawn.status_code == 200, withdrawn.text
        assert noted.count_documents({"study_id": world.study, "user_id": real}) == 0
        assert noted.count_documents({"study_id": world.study, "user_id": world.people[0]}) == 1
    with _client(stack, world.viewer) as ta:
        assert ta.get("/api/sentiments", params={"user_id": alias}).json() == []


def _ndjson(answer: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in answer.text.splitlines() if line]


def test_a_gridded_studys_daily_figures_are_of_whole_days(stack: Stack, world: World) -> None:
    """The distance of a window between two fixes once gave their exact distance inside
    a cell; a viewer of a gridded study now gets the figures of the whole local days
    the window touches, whatever window it asks for."""
    real = world.people[0]
    with stack.client("admin") as admin:
        fixes = admin.get(
            "/api/gps", params={"user_id": real, "study_id": world.study, "order": "asc"}
        ).json()
        whole = _ndjson(
            admin.get("/api/telemetry/daily", params={"user_id": real, "study_id": world.study})
        )
    assert len(fixes) == len(PLACES)
    first, second = fixes[0]["timestamp"], fixes[1]["timestamp"]
    alias = _pseudonyms(stack, world)[real]
    with _client(stack, world.viewer) as ta:
        narrow = ta.get(
            "/api/telemetry/daily",
            params={"user_id": alias, "since": first, "until": second[:-1] + "1Z"},
        )
    assert narrow.status_code == 200, narrow.text
    [day] = [row for row in _ndjson(narrow) if row["user_id"] == alias]
    [whole_day] = [row for row in whole if row["local_date"] == day["local_date"]]
    assert day["gps_fixes"] == whole_day["gps_fixes"] == len(PLACES)
    assert day["distance_km"] == whole_day["distance_km"]


def test_a_read_by_pseudonym_is_found_in_the_audit_trail_by_the_real_id(
    stack: Stack, world: World
) -> None:
    real = world.people[0]
    alias = _pseudonyms(stack, world)[real]
    request_id = f"by-pseudonym-{uuid.uuid4().hex}"
    with _client(stack, world.viewer) as ta:
        answer = ta.get(
            "/api/sentiments", params={"user_id": alias}, headers={"X-Request-ID": request_id}
        )
    assert answer.status_code == 200
    with stack.client("admin") as admin:

        def found() -> list[dict]:
            return admin.get("/api/audit", params={"user_id": real}).json()

        wait_until(lambda: any(e["request_id"] == request_id for e in found()), 15, "the entry")
        [entry] = [e for e in found() if e["request_id"] == request_id]
    # The pseudonym it was asked by, and the person it stands for.
    assert entry["participants"] == [alias, real]
