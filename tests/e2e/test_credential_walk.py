"""Every operation of the four OpenAPI documents, with every kind of credential, through
the gateway: the outcome each operation declares for it.

An operation's security requirement names the roles it is for (services.common.research.auth
declares them on the guards; a guard without roles fails the app's build). So a route
added later is walked the day it is added. For each operation and credential:
no credential is 401 on a secured operation; a role the operation is not for is 403;
a role it is for is neither 401 nor 403, and a credential that does not cover study A
(a viewer or a participant of study B) is 404 for anything of study A, as if absent.
Writes included: reads go first, then writes, then deletions, the admin last of each.
Nothing answers 5xx. A stack of its own: the admin's writes change what they reach.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, stack_of_its_own
from tests.media.conftest import h264_video
from tests.support import TOKENS

walk_stack = stack_of_its_own(
    "emogo_walk",
    EMOGO_SIGN_IN_REQUESTS_PER_MINUTE="10000",
    EMOGO_ENROLMENT_ATTEMPTS_PER_ADDRESS="10000",
)
DOCUMENTS = ("ingest", "media", "admin", "gateway")
# Each kind of credential and the role it holds.
ROLE_OF = {
    "none": None,
    "admin": "admin",
    "viewer": "viewer",
    "viewer A": "viewer",
    "viewer B": "viewer",
    "device": "device",
    "participant a": "participant",
    "participant b": "participant",
    "user": "user",
}
# Credentials that do not cover study A.
OUTSIDERS = {"viewer B", "participant b"}
METHOD_ORDER = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}


@dataclass
class World:
    tokens: dict[str, str | None]
    study_a: str
    participant_a: str
    sentiment_a: str
    fix_a: str
    vlog_a: str
    user_id: str


@pytest.fixture(scope="module")
def world(walk_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    tag = uuid.uuid4().hex[:8]
    studies = {"a": f"walk-a-{tag}", "b": f"walk-b-{tag}"}
    tokens: dict[str, str | None] = {
        "none": None,
        "admin": TOKENS["admin"],
        "viewer": TOKENS["viewer"],
        "device": TOKENS["device"],
    }
    people = {}
    with walk_stack.client("admin") as admin, walk_stack.client() as anyone:
        for key, study_id in studies.items():
            assert admin.post("/api/studies", json={"study_id": study_id, "name": key}).is_success
            person = f"walk-{key}-{tag}"
            [issued] = admin.post(
                f"/api/studies/{study_id}/participants", json={"user_ids": [person]}
            ).json()["participants"]
            enrolled = anyone.post(
                "/api/enrol", json={"study_id": study_id, "code": issued["code"]}
            )
            tokens[f"participant {key}"] = enrolled.json()["token"]
            minted = admin.post(
                "/api/viewer-tokens", json={"name": f"TA {key}", "study_ids": [study_id]}
            )
            tokens[f"viewer {key.upper()}"] = minted.json()["token"]
            people[key] = person
        account = {"username": f"walker-{tag}", "password": "correct horse battery"}
        user_id = anyone.post("/api/v1/register_user", json=account).json()["user_id"]
        tokens["user"] = anyone.post("/api/v1/authenticate_user", json=account).json()["token"]
    headers = {"Authorization": f"Bearer {tokens['participant a']}"}
    video = h264_video(tmp_path_factory.mktemp("walk") / "a.mp4", 5)
    with httpx.Client(base_url=walk_stack.gateway, headers=headers, timeout=60) as phone:
        sentiment = phone.post("/api/sentiments", json={"emotion": "calm", "intensity": 0.4})
        fix = phone.post("/api/gps", json={"latitude": 25.0, "longitude": 121.5})
        vlog = phone.post("/api/vlogs/upload", files={"video": ("a.mp4", video, "video/mp4")})
    return World(
        tokens=tokens,
        study_a=studies["a"],
        participant_a=people["a"],
        sentiment_a=sentiment.json()["id"],
        fix_a=fix.json()["id"],
        vlog_a=vlog.json()["vlog"]["_id"],
        user_id=user_id,
    )


def _value(name: str, path: str, world: World) -> tuple[str, bool]:
    """A path parameter's value, and whether it names something of study A."""
    if name == "study_id":
        return world.study_a, True
    if name == "user_id":
        if path.startswith("/api/v1/"):
            return world.user_id, False
        return world.participant_a, True
    if name in ("vlog_id", "filename"):
        return world.vlog_a + (".mp4" if name == "filename" else ""), True
    if "gps" in path:
        return world.fix_a, True
    if path.startswith("/api/sentiments"):
        return world.sentiment_a, True
    if name == "n_lines":
        return "5", False
    return "000000000000000000000000", False


def _operations(client: httpx.Client) -> list[tuple[str, str, list[str] | None, str]]:
    """(method, path, roles, document) of every operation of the four documents; roles
    None for an operation open to anyone."""
    found = []
    for document in DOCUMENTS:
        answer = client.get(f"/docs/{document}/openapi.json")
        assert answer.status_code == 200, document
        spec = answer.json()
        default = spec.get("security")
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method not in METHOD_ORDER:
                    continue
                security = operation.get("security", default)
                if security == []:
                    roles = None
                else:
                    roles = sorted(
                        {role for scheme in security for role in scheme.get("bearer", [])}
                    )
                    assert roles, f"{method.upper()} {path} ({document}) declares no roles"
                found.append((method, path, roles, document))
    # Deeper paths first within a method, so a study itself is deleted last.
    found.sort(key=lambda op: (METHOD_ORDER[op[0]], -op[1].count("/"), op[1]))
    return found


def _expected(
    credential: str, roles: list[str] | None, of_study_a: bool, document: str
) -> set[int] | None:
    """The statuses allowed; None: any but 401, 403 and 5xx."""
    if roles is None:
        return None
    role = ROLE_OF[credential]
    # A companion-app user's token is a credential of the admin service alone.
    if role is None or (role == "user" and document != "admin"):
        return {401}
    if role not in roles:
        return {403}
    if credential in OUTSIDERS and of_study_a:
        return {404}
    return None


def test_every_operation_answers_every_credential_as_it_declares(
    walk_stack: Stack, world: World
) -> None:
    unexpected: list[str] = []
    walked = 0
    with httpx.Client(base_url=walk_stack.gateway, timeout=60) as client:
        operations = _operations(client)
        # Every other credential first: the admin's writes revoke and delete.
        rounds = [[c for c in ROLE_OF if c != "admin"], ["admin"]]
        for credentials, (method, template, roles, document) in (
            (credentials, operation) for credentials in rounds for operation in operations
        ):
            of_study_a = False
            path = template
            for name in re.findall(r"{(\w+)}", template):
                value, names_a = _value(name, template, world)
                of_study_a = of_study_a or names_a
                path = path.replace("{" + name + "}", value)
            for credential in credentials:
                token = world.tokens[credential]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                body: dict[str, Any] = {}
                if method in ("post", "put", "patch"):
                    body["json"] = {}
                answer = client.request(method.upper(), path, headers=headers, **body)
                walked += 1
                wanted = _expected(credential, roles, of_study_a, document)
                status = answer.status_code
                wrong = status >= 500 if wanted is None and roles is None else False
                if wanted is None and roles is not None:
                    wrong = status in (401, 403) or status >= 500
                elif wanted is not None:
                    wrong = status not in wanted
                if wrong:
                    unexpected.append(
                        f"{method.upper()} {template} as {credential}: {status} "
                        f"(wanted {sorted(wanted) if wanted else 'not 401/403/5xx'}) "
                        f"{answer.text[:120]}"
                    )
    print(f"walked {len(operations)} operations x {len(ROLE_OF)} credentials = {walked}")
    assert len(operations) > 100
    assert not unexpected, "\n".join(unexpected)
