"""Every read route against every kind of credential, through the gateway: the status
each should get, and no participant it may not see in any body it does get.

Credentials: admin, the global viewer, a viewer of study A, a viewer of study B, a
participant of A, another participant of A, the global device token, none."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Stack
from tests.media.conftest import h264_video
from tests.support import TOKENS, wait_until


@dataclass
class Matrix:
    people: dict[str, str]  # "a", "a2", "b" -> participant id
    sentiment: dict[str, str]  # -> one of their sentiment ids
    vlog: dict[str, str]  # -> one of their vlog ids
    tokens: dict[str, str | None]  # credential name -> bearer token


@pytest.fixture(scope="module")
def matrix(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    tag = uuid.uuid4().hex[:8]
    studies = {"A": f"matrix-a-{tag}", "B": f"matrix-b-{tag}"}
    people = {"a": f"ma-{tag}", "a2": f"ma2-{tag}", "b": f"mb-{tag}"}
    study_of = {"a": "A", "a2": "A", "b": "B"}
    folder = tmp_path_factory.mktemp("matrix")
    own: dict[str, str] = {}
    tokens: dict[str, str | None] = {
        "admin": TOKENS["admin"],
        "viewer": TOKENS["viewer"],
        "device": TOKENS["device"],
        "none": None,
    }
    with stack.client("admin") as admin, stack.client() as phone:
        for key, study_id in studies.items():
            admin.post("/api/studies", json={"study_id": study_id, "name": key})
            ids = [people[p] for p in people if study_of[p] == key]
            issued = admin.post(
                f"/api/studies/{study_id}/participants", json={"user_ids": ids}
            ).json()["participants"]
            for participant in issued:
                answer = phone.post(
                    "/api/enrol", json={"study_id": study_id, "code": participant["code"]}
                ).json()
                [name] = [p for p in people if people[p] == answer["user_id"]]
                own[name] = answer["token"]
            minted = admin.post(
                "/api/viewer-tokens", json={"name": f"TA {key}", "study_ids": [study_id]}
            )
            tokens[f"viewer {key}"] = minted.json()["token"]
    tokens["participant a"] = own["a"]
    tokens["participant a2"] = own["a2"]
    sentiment, vlog = {}, {}
    for n, name in enumerate(people):
        headers = {"Authorization": f"Bearer {own[name]}"}
        with httpx.Client(base_url=stack.gateway, headers=headers, timeout=60) as client:
            body = {"emotion": "calm", "intensity": 0.3}
            sentiment[name] = client.post("/api/sentiments", json=body).json()["id"]
            client.post("/api/gps", json={"latitude": 10.5, "longitude": 20.5})
            video = h264_video(Path(folder) / f"{name}.mp4", 60 + n)
            vlog[name] = client.post(
                "/api/vlogs/upload", files={"video": (f"{name}.mp4", video, "video/mp4")}
            ).json()["vlog"]["_id"]
    return Matrix(people, sentiment, vlog, tokens)


# Whose data each credential may see (of the three participants made above).
VISIBLE = {
    "admin": {"a", "a2", "b"},
    "viewer": {"a", "a2", "b"},
    "viewer A": {"a", "a2"},
    "viewer B": {"b"},
    "participant a": {"a"},
    "participant a2": {"a2"},
    "device": set(),
    "none": set(),
}
# Routes a participant may read (its own data only); the rest are for viewers.
PARTICIPANT_ROUTES = {"list", "count", "stream", "gps list", "gps stream", "vlog list"}


def routes(m: Matrix) -> dict[str, str]:
    """Route name -> path. `{x}` routes are asked once for each participant's item."""
    return {
        "list": "/api/sentiments?limit=1000",
        "count": "/api/sentiments/count",
        "stream": "/api/sentiments/stream",
        "gps list": "/api/gps?limit=1000",
        "gps stream": "/api/gps/stream",
        "vlog list": "/api/vlogs?limit=1000",
        "vlog participants": "/api/vlogs/participants",
        "summary": "/api/telemetry/summary",
        "participants": "/api/telemetry/participants?limit=500",
        "timeline": "/api/telemetry/timeline",
        "sentiments csv": "/api/export/sentiments.csv",
        "gps ndjson": "/api/export/gps.ndjson",
        "vlogs json": "/api/export/vlogs.json",
        "everything": "/api/export/all",
        "export page": "/export",
    }


def signed_in_as(stack: Stack, matrix: Matrix, credential: str) -> httpx.Client:
    """A client of the gateway with the credential's token (none for `none`)."""
    token = matrix.tokens[credential]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=stack.gateway, headers=headers, timeout=60)


def expected_status(credential: str, route: str) -> int:
    if credential == "none":
        return 401
    if credential == "device":
        return 403
    if credential.startswith("participant") and route not in PARTICIPANT_ROUTES:
        return 403
    return 200


@pytest.mark.parametrize("credential", list(VISIBLE))
def test_every_read_route_answers_each_credential_with_only_what_it_may_see(
    stack: Stack, matrix: Matrix, credential: str
) -> None:
    hidden = [matrix.people[p] for p in matrix.people if p not in VISIBLE[credential]]
    shown = [matrix.people[p] for p in VISIBLE[credential]]
    with signed_in_as(stack, matrix, credential) as client:
        for route, path in routes(matrix).items():
            response = client.get(path)
            wanted = expected_status(credential, route)
            assert response.status_code == wanted, (route, response.text[:200])
            if wanted != 200:
                continue
            for participant in hidden:
                assert participant not in response.text, (route, participant)
            # A scoped credential's lists are small enough to hold all it may see (the
            # global ones page through everything the session's other tests stored).
            scoped = credential not in ("admin", "viewer")
            if scoped and route in ("list", "stream", "gps list", "vlog list", "sentiments csv"):
                for participant in shown:
                    assert participant in response.text, (route, participant)

        for name in matrix.people:
            visible = name in VISIBLE[credential]
            by_id = {
                "sentiment": f"/api/sentiments/{matrix.sentiment[name]}",
                "vlog": f"/api/vlogs/{matrix.vlog[name]}",
                "download": f"/api/vlogs/{matrix.vlog[name]}/download",
                "thumbnail": f"/api/vlogs/{matrix.vlog[name]}/thumbnail",
            }
            for what, path in by_id.items():
                status = client.get(path).status_code
                if credential in ("none", "device"):
                    assert status == (401 if credential == "none" else 403), (what, name)
                else:
                    assert status == (200 if visible else 404), (what, name, status)


@pytest.mark.parametrize("credential", list(VISIBLE))
def test_writes_for_a_participant_of_study_a(stack: Stack, matrix: Matrix, credential: str) -> None:
    """Who may store a sentiment naming participant a: admin and the device token (the
    global writers), and participant a themselves; nobody else, and nothing is stored
    for a refused one."""
    body = {"user_id": matrix.people["a"], "emotion": "sad", "intensity": 0.2}
    with signed_in_as(stack, matrix, credential) as client:
        status = client.post("/api/sentiments", json=body).status_code
    allowed = {"admin": 201, "device": 201, "participant a": 201, "none": 401}
    assert status == allowed.get(credential, 403), credential


# Who may change participant a's vlog (study A): the admin and participant a. The device
# token did not upload it, so it is absent to it (404) like to anyone not covering it.
EDITS = {
    "admin": 200,
    "participant a": 200,
    "participant a2": 404,
    "device": 404,
    "viewer": 403,
    "viewer A": 403,
    "viewer B": 403,
    "none": 401,
}


@pytest.mark.parametrize("credential", list(EDITS))
def test_a_vlog_is_changed_only_by_who_may_and_every_change_is_audited(
    stack: Stack, matrix: Matrix, credential: str
) -> None:
    path = f"/api/vlogs/{matrix.vlog['a']}"
    title = f"by {credential} {uuid.uuid4().hex[:6]}"
    with signed_in_as(stack, matrix, credential) as client:
        empty = client.patch(path, json={})
        renamed = client.patch(path, json={"title": title})
    assert (empty.status_code, renamed.status_code) == (EDITS[credential],) * 2, empty.text
    with stack.client("admin") as admin:
        stored = admin.get(path).json()
        if EDITS[credential] == 200:
            assert stored["title"] == title
        else:
            assert stored["title"] != title
            # A refused edit tells nothing of the vlog: no participant, no title.
            assert matrix.people["a"] not in renamed.text
        if credential != "none":
            role = "participant" if credential.startswith("participant") else credential.split()[0]

            def both_recorded() -> bool:
                found = admin.get("/api/audit", params={"action": f"PATCH {path}"}).json()
                return len([e for e in found if e["role"] == role]) >= 2

            wait_until(both_recorded, 30, what="both edits recorded in the audit trail")


@pytest.mark.parametrize("path", ["/api/export/everything.zip", "/api/export/all"])
def test_an_export_of_a_study_not_covered_is_refused_before_its_first_byte(
    stack: Stack, matrix: Matrix, path: str
) -> None:
    """It once answered 200 and a cut 73-byte ZIP."""
    other_study = matrix.people["b"].replace("mb-", "matrix-b-")
    with signed_in_as(stack, matrix, "viewer A") as client:
        answer = client.get(path, params={"study_id": other_study})
    assert answer.status_code == 403, answer.text[:200]
    assert answer.headers["content-type"].startswith("application/json")
    assert other_study in answer.json()["detail"]["error"]
