"""Single posts of one credential that arrive together go to ingest together
(services.gateway.proxy.coalescing), and each client still gets the answer it would have
had alone: stored once, refused alone, with the same status, headers and body."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from multidict import CIMultiDict
from pymongo import MongoClient

from services.gateway.proxy.coalescing import relayable
from tests.conftest import Stack
from tests.support import TOKENS, bearer, enrolled

RELAYED_LINE = "POST /api/{kind}/posts 200"


def relayed_requests(stack: Stack, kind: str = "sentiments") -> int:
    """How many combined requests ingest has answered (its access lines)."""
    lines = (stack.config.log_dir / "ingest.log").read_text().splitlines()
    wanted = RELAYED_LINE.format(kind=kind)
    return sum(1 for line in lines if wanted in line)


async def post_at_once(
    stack: Stack, path: str, bodies: list[Any], headers: dict[str, str]
) -> list[httpx.Response]:
    """Every body posted at the same moment, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(
        base_url=stack.gateway, headers=headers, limits=limits, timeout=60
    ) as client:
        return await asyncio.gather(*(client.post(path, json=body) for body in bodies))


def posted_together(
    stack: Stack, path: str, make_bodies: Any, headers: dict[str, str], kind: str = "sentiments"
) -> list[httpx.Response]:
    """Posts at once until ingest has answered some of them as one combined request
    (they arrive while the first is on its way); each round's bodies are new."""
    for _ in range(10):
        before = relayed_requests(stack, kind)
        answers = asyncio.run(post_at_once(stack, path, make_bodies(), headers))
        if relayed_requests(stack, kind) > before:
            return answers
    raise AssertionError("no posts were relayed together in 10 rounds")


def stored(stack: Stack, collection: str, user_id: str) -> list[dict]:
    with MongoClient(stack.config.mongodb_uri) as client:
        return list(client[stack.db_name][collection].find({"user_id": user_id}))


def test_posts_relayed_together_are_each_stored_once_and_answered_as_alone(
    stack: Stack, device: httpx.Client
) -> None:
    participant = f"co-{uuid.uuid4().hex[:8]}"
    alone = device.post(
        "/api/sentiments", json={"user_id": participant, "emotion": "calm", "intensity": 0.2}
    )
    assert alone.status_code == 201
    rounds: list[list[dict]] = []

    def bodies() -> list[dict]:
        n = len(rounds)
        made = [
            {"user_id": participant, "emotion": "happy", "intensity": 0.5, "client_id": f"{n}-{i}"}
            for i in range(40)
        ]
        rounds.append(made)
        return made

    answers = posted_together(stack, "/api/sentiments", bodies, bearer("device"))
    assert [a.status_code for a in answers] == [201] * 40
    ids = set()
    for sent, answer in zip(rounds[-1], answers, strict=True):
        # The headers and body of a post that went alone, for this post's record.
        assert answer.headers["content-type"] == alone.headers["content-type"]
        assert answer.headers["cache-control"] == "no-store"
        assert int(answer.headers["content-length"]) == len(answer.content)
        assert len(answer.headers["x-request-id"]) == len(alone.headers["x-request-id"])
        body = answer.json()
        assert body.keys() == alone.json().keys()
        assert body["message"] == "Sentiment created successfully"
        assert body["record"]["client_id"] == sent["client_id"]
        assert body["record"]["_id"] == body["id"]
        ids.add(body["id"])
    assert len(ids) == 40
    assert len({a.headers["x-request-id"] for a in answers}) == 40
    client_ids = [d["client_id"] for d in stored(stack, "sentiments", participant)]
    sent_ids = [None] + [b["client_id"] for made in rounds for b in made]
    assert sorted(client_ids, key=str) == sorted(sent_ids, key=str)


def test_a_refused_post_is_refused_alone_and_the_others_are_stored(stack: Stack) -> None:
    participant = f"cr-{uuid.uuid4().hex[:8]}"
    rounds: list[list[dict]] = []

    def bodies() -> list[dict]:
        n = len(rounds)
        made: list[dict] = [
            {"user_id": participant, "latitude": 25.0, "longitude": 121.5, "client_id": f"{n}-{i}"}
            for i in range(30)
        ]
        made[3]["latitude"] = 91  # out of range
        made[5] = {"user_id": participant, "longitude": 121.5}  # no latitude
        made[7]["client_id"] = made[8]["client_id"]  # the same record twice at once
        rounds.append(made)
        return made

    answers = posted_together(stack, "/api/gps", bodies, bearer("device"), kind="gps")
    statuses = [a.status_code for a in answers]
    assert statuses[3] == 422
    assert statuses[5] == 422
    assert answers[3].json()["detail"]["errors"][0]["field"] == "latitude"
    assert "must be at most 90" in answers[3].json()["detail"]["error"]
    assert answers[5].json()["detail"]["errors"][0]["field"] == "latitude"
    # One of the twins is stored; the other is told which record holds it.
    assert sorted(statuses[7:9]) == [201, 409]
    twin = answers[7] if statuses[7] == 201 else answers[8]
    conflict = answers[8] if statuses[7] == 201 else answers[7]
    assert conflict.json()["detail"]["id"] == twin.json()["id"]
    others = [s for i, s in enumerate(statuses) if i not in (3, 5, 7, 8)]
    assert others == [201] * 26
    fixes = stored(stack, "gps_coordinates", participant)
    last_round = {f"{len(rounds) - 1}-{i}" for i in range(30)} - {
        f"{len(rounds) - 1}-{i}" for i in (3, 5, 7)
    }
    assert {d["client_id"] for d in fixes} >= last_round
    assert len(fixes) == len({d["client_id"] for d in fixes})  # nothing twice


def test_participants_reach_only_their_own_records_when_relayed_together(
    stack: Stack, admin: httpx.Client
) -> None:
    study_id = f"co-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/studies", json={"study_id": study_id, "name": "Co"}).status_code == 201
    own, other = f"A{uuid.uuid4().hex[:6]}", f"B{uuid.uuid4().hex[:6]}"
    tokens = enrolled(stack, study_id, [own, other])

    def bodies() -> list[dict]:
        made: list[dict] = [{"emotion": "sad", "intensity": 0.3} for _ in range(30)]
        made[4] = {"user_id": other, "emotion": "sad", "intensity": 0.3}
        return made

    answers = posted_together(stack, "/api/sentiments", bodies, tokens[own])
    assert answers[4].status_code == 403
    assert answers[4].json()["detail"]["field"] == "user_id"
    assert [a.status_code for i, a in enumerate(answers) if i != 4] == [201] * 29
    assert all(a.json()["record"]["user_id"] == own for i, a in enumerate(answers) if i != 4)
    assert stored(stack, "sentiments", other) == []


def test_a_credential_refused_as_a_whole_is_answered_to_each_as_alone(stack: Stack) -> None:
    forged = {"Authorization": "Bearer not-a-token-of-this-stack"}
    body = {"user_id": "forged", "emotion": "happy", "intensity": 0.5}
    answers = asyncio.run(post_at_once(stack, "/api/sentiments", [body] * 20, forged))
    assert [a.status_code for a in answers] == [401] * 20
    for answer in answers:
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert answer.json()["detail"]["error"] == "Invalid credentials"
    assert stored(stack, "sentiments", "forged") == []


def test_ingest_answers_combined_posts_in_order_and_refuses_malformed_ones(
    device: httpx.Client,
) -> None:
    participant = f"cp-{uuid.uuid4().hex[:8]}"
    posts = [
        {"user_id": participant, "emotion": "happy", "intensity": 0.1},
        {"user_id": participant, "emotion": "happy", "intensity": "high"},
        [1, 2],
        {"user_id": participant, "emotion": "calm", "intensity": 0.9},
    ]
    answer = device.post("/api/sentiments/posts", json=posts)
    assert answer.status_code == 200
    answers = answer.json()["answers"]
    assert [a["status"] for a in answers] == [201, 422, 422, 201]
    assert answers[0]["body"]["record"]["intensity"] == 0.1
    assert answers[1]["body"]["detail"]["errors"][0]["field"] == "intensity"
    assert answers[3]["body"]["record"]["emotion"] == "calm"
    # The answers are those of posts sent alone.
    alone = device.post("/api/sentiments", json=posts[2])
    assert alone.status_code == 422
    assert alone.json() == answers[2]["body"]
    for body, reason in (
        ([], "must hold 1 to 64 posts, not 0"),
        ([{"user_id": participant}] * 65, "must hold 1 to 64 posts, not 65"),
    ):
        refused = device.post("/api/sentiments/posts", json=body)
        assert refused.status_code == 422
        assert refused.json()["detail"]["errors"] == [{"field": "body", "reason": reason}]
    not_a_list = device.post("/api/sentiments/posts", json={"user_id": participant})
    assert not_a_list.status_code == 400
    assert "not a JSON array of posts" in not_a_list.json()["detail"]["error"]
    as_text = device.post(
        "/api/sentiments/posts", content=b"[]", headers={"content-type": "text/plain"}
    )
    assert as_text.status_code == 415


def test_the_combined_route_needs_a_writer(stack: Stack) -> None:
    body = [{"user_id": "x", "emotion": "happy", "intensity": 0.5}]
    with stack.client("viewer") as viewer, stack.client() as anonymous:
        assert viewer.post("/api/sentiments/posts", json=body).status_code == 403
        assert anonymous.post("/api/sentiments/posts", json=body).status_code == 401


def headers_of(**fields: str) -> CIMultiDict[str]:
    return CIMultiDict({"authorization": f"Bearer {TOKENS['device']}", **fields})


@pytest.mark.parametrize(
    ("path", "query", "headers", "body", "expected"),
    [
        ("/api/sentiments", b"", headers_of(), b'{"emotion": "happy"}', True),
        ("/api/gps", b"", headers_of(**{"content-type": "application/json"}), b"{}", True),
        # Two objects in one body would be two posts of the combined array.
        ("/api/sentiments", b"", headers_of(), b'{"a": 1}, {"b": 2}', False),
        ("/api/sentiments", b"", headers_of(), b'[{"a": 1}]', False),
        ("/api/sentiments", b"", headers_of(), b'{"a": NaN}', False),
        ("/api/sentiments", b"", headers_of(), b'{"a": "\xff"}', False),
        ("/api/sentiments", b"", headers_of(), b"", False),
        ("/api/sentiments", b"", headers_of(), b'{"a": "' + b"x" * 20000 + b'"}', False),
        ("/api/sentiments", b"x=1", headers_of(), b"{}", False),
        ("/api/sentiments/batch", b"", headers_of(), b"{}", False),
        ("/api/vlogs", b"", headers_of(), b"{}", False),
        ("/api/sentiments", b"", CIMultiDict(), b"{}", False),
        ("/api/sentiments", b"", headers_of(**{"content-encoding": "gzip"}), b"{}", False),
        ("/api/sentiments", b"", headers_of(**{"content-type": "text/plain"}), b"{}", False),
    ],
)
def test_what_may_be_relayed_together(
    path: str, query: bytes, headers: CIMultiDict[str], body: bytes, expected: bool
) -> None:
    assert relayable(path, query, headers, body) is expected


def test_the_combined_route_is_documented(stack: Stack) -> None:
    with stack.client("admin") as admin:
        document = admin.get("/docs/ingest/openapi.json").json()
    operation = document["paths"]["/api/sentiments/posts"]["post"]
    assert operation["operationId"] == "createSentimentsRelayed"
    assert "requestBody" in operation
    answered = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][answered.rsplit("/", 1)[1]]
    assert schema["required"] == ["answers"]
