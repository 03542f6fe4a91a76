"""Single posts that arrive together go to ingest together, whatever their credentials
(services.gateway.proxy.coalescing), and each client still gets the answer it would have
had alone: stored once, refused alone (its credential too), with the same status,
headers and body."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from multidict import CIMultiDict
from pymongo import MongoClient

from services.gateway.proxy.coalescing import relayable
from tests.conftest import Stack
from tests.support import SERVICE_TOKEN, TOKENS, bearer, enrolled

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


def test_a_forged_credential_is_answered_as_alone(stack: Stack) -> None:
    forged = {"Authorization": "Bearer not-a-token-of-this-stack"}
    body = {"user_id": "forged", "emotion": "happy", "intensity": 0.5}
    answers = asyncio.run(post_at_once(stack, "/api/sentiments", [body] * 20, forged))
    assert [a.status_code for a in answers] == [401] * 20
    for answer in answers:
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert answer.json()["detail"]["error"] == "Invalid credentials"
    assert stored(stack, "sentiments", "forged") == []


async def post_each_with_own_credential(
    stack: Stack, path: str, posts: list[tuple[dict[str, str], dict]]
) -> list[httpx.Response]:
    """Every (credential, body) posted at the same moment, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(posts))
    async with httpx.AsyncClient(base_url=stack.gateway, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(client.post(path, json=body, headers=headers) for headers, body in posts)
        )


def test_phones_with_their_own_tokens_are_relayed_together_each_checked_alone(
    stack: Stack, admin: httpx.Client
) -> None:
    study_id = f"cm-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/studies", json={"study_id": study_id, "name": "Cm"}).status_code == 201
    people = [f"M{n}{uuid.uuid4().hex[:5]}" for n in range(12)]
    tokens = enrolled(stack, study_id, people)
    withdrawn = people[-1]
    gone = admin.post(f"/api/studies/{study_id}/participants/{withdrawn}/withdraw", json={})
    assert gone.status_code == 200
    forged = {"Authorization": "Bearer emp_forged-0123456789abcdefghijklmnopqrstuvwxyz"}
    rounds: list[list[tuple[str, dict[str, str], dict]]] = []
    for _ in range(10):
        n = len(rounds)
        made = [
            (
                user_id,
                tokens[user_id],
                {"emotion": "calm", "intensity": 0.4, "client_id": f"{n}-{i}"},
            )
            for i, user_id in enumerate(people)
        ]
        made.append(("forged", forged, {"emotion": "calm", "intensity": 0.4}))
        rounds.append(made)
        before = relayed_requests(stack)
        answers = asyncio.run(
            post_each_with_own_credential(
                stack, "/api/sentiments", [(headers, body) for _, headers, body in made]
            )
        )
        if relayed_requests(stack) > before:
            break
    else:
        raise AssertionError("no posts were relayed together in 10 rounds")
    by_person = {who: answer for (who, _, _), answer in zip(rounds[-1], answers, strict=True)}
    # A refused credential refuses its own post only, with the answer it gets alone.
    assert by_person["forged"].status_code == 401
    assert by_person["forged"].json()["detail"]["error"] == "Invalid credentials"
    assert by_person[withdrawn].status_code == 401
    for user_id in people[:-1]:
        answer = by_person[user_id]
        assert answer.status_code == 201, answer.text
        assert answer.json()["record"]["user_id"] == user_id, "stored as its own participant"
        assert answer.json()["record"]["study_id"] == study_id
    # Every round's posts of live tokens stored once, each under its own participant.
    for user_id in people[:-1]:
        client_ids = sorted(d["client_id"] for d in stored(stack, "sentiments", user_id))
        assert client_ids == sorted(
            body["client_id"] for made in rounds for who, _, body in made if who == user_id
        )
    assert stored(stack, "sentiments", withdrawn) == []


def ingest_direct(stack: Stack, token: str | None) -> httpx.Client:
    """A client of the ingest service itself, past the gateway."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=stack.config.url("ingest"), headers=headers, timeout=30)


def test_ingest_answers_combined_posts_in_order_and_refuses_malformed_ones(
    stack: Stack, device: httpx.Client
) -> None:
    participant = f"cp-{uuid.uuid4().hex[:8]}"
    device_credential = f"Bearer {TOKENS['device']}"
    posts = [
        {"user_id": participant, "emotion": "happy", "intensity": 0.1},
        {"user_id": participant, "emotion": "happy", "intensity": "high"},
        [1, 2],
        {"user_id": participant, "emotion": "calm", "intensity": 0.9},
    ]
    combined = [{"authorization": device_credential, "body": post} for post in posts]
    combined.append(
        {"authorization": f"Bearer {TOKENS['viewer']}", "body": posts[0]}  # not a writer
    )
    with ingest_direct(stack, SERVICE_TOKEN) as gateway_itself:
        answer = gateway_itself.post("/api/sentiments/posts", json=combined)
        assert answer.status_code == 200
        answers = answer.json()["answers"]
        assert [a["status"] for a in answers] == [201, 422, 422, 201, 403]
        assert answers[0]["body"]["record"]["intensity"] == 0.1
        assert answers[1]["body"]["detail"]["errors"][0]["field"] == "intensity"
        assert answers[3]["body"]["record"]["emotion"] == "calm"
        # The answers are those of posts sent alone.
        alone = device.post("/api/sentiments", json=posts[2])
        assert alone.status_code == 422
        assert alone.json() == answers[2]["body"]
        one = {"authorization": device_credential, "body": {"user_id": participant}}
        for body, reason in (
            ([], "must hold 1 to 64 posts, not 0"),
            ([one] * 65, "must hold 1 to 64 posts, not 65"),
        ):
            refused = gateway_itself.post("/api/sentiments/posts", json=body)
            assert refused.status_code == 422
            assert refused.json()["detail"]["errors"] == [{"field": "body", "reason": reason}]
        for body in ({"user_id": participant}, [posts[0]], b"[" * 50_000 + b"]" * 50_000):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            refused = gateway_itself.post(
                "/api/sentiments/posts", content=raw, headers={"content-type": "application/json"}
            )
            assert refused.status_code == 400, refused.text[:300]
        as_text = gateway_itself.post(
            "/api/sentiments/posts", content=b"[]", headers={"content-type": "text/plain"}
        )
        assert as_text.status_code == 415


def test_only_the_gateway_relays_posts_together(stack: Stack) -> None:
    body = [{"authorization": f"Bearer {TOKENS['device']}", "body": {"emotion": "happy"}}]
    for path in ("/api/sentiments/posts", "/api/gps/posts"):
        for role in ("admin", "device", None):
            # Not reachable from outside at all...
            with stack.client(role) as outside:
                assert outside.post(path, json=body).status_code == 404
            # ...and at the service itself, no role token will do.
            with ingest_direct(stack, TOKENS[role] if role else None) as direct:
                assert direct.post(path, json=body).status_code == (403 if role else 401)


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
        # A credential longer than any issued one's goes alone.
        ("/api/sentiments", b"", headers_of(authorization="Bearer " + "x" * 600), b"{}", False),
    ],
)
def test_what_may_be_relayed_together(
    path: str, query: bytes, headers: CIMultiDict[str], body: bytes, expected: bool
) -> None:
    assert relayable(path, query, headers, body) is expected
