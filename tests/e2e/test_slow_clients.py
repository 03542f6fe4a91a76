"""Slow and abusive clients cannot starve others: 1,000 connections from one address
that send headers or bodies a byte at a time, without any credential, leave other
clients' requests answered normally, and each slow one is cut off with 408."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Stack, stack_of_its_own
from tests.support import TOKENS

SLOW_CONNECTIONS = 1_000
DEADLINE_SECONDS = 3
# Another loopback address: the slow clients are one address, the others another.
ATTACKER = "127.0.0.2"


# No per-address cap here, so that all 1,000 slow connections are really held and the
# deadlines and the gateway's buffering are what protects the others.
guarded_stack = stack_of_its_own(
    "emogo_slow_clients",
    EMOGO_MAX_CONNECTIONS_PER_CLIENT="0",
    EMOGO_HEADER_TIMEOUT=str(DEADLINE_SECONDS),
    EMOGO_BODY_TIMEOUT=str(DEADLINE_SECONDS),
)


async def _slow_client(port: int, slow_part: str, seen: list[str]) -> None:
    """Sends a request one byte a second, as long as the server lets it, up to 60 s."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    except OSError as problem:
        seen.append(f"connect failed: {type(problem).__name__}")
        return
    head = (
        b"POST /api/sentiments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000\r\n\r\n"
    )
    if slow_part == "body":
        writer.write(head)
        pending = b" " * 10_000
    else:
        pending = head
    started = time.monotonic()
    try:
        while time.monotonic() - started < 60 and pending:
            writer.write(pending[:1])
            pending = pending[1:]
            await writer.drain()
            try:
                status_line = await asyncio.wait_for(reader.readline(), 1.0)
            except TimeoutError:
                continue
            seen.append(status_line.decode().strip() or "closed")
            return
        seen.append("still open after 60 s")
    except OSError:
        seen.append("closed")
    finally:
        writer.close()


async def _normal_requests(gateway: str, count: int) -> list[tuple[int, int]]:
    """A phone's post and a health check, one pair every 0.1 s, each allowed 10 s."""
    answers = []
    headers = {"Authorization": f"Bearer {TOKENS['device']}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=10) as client:
        for n in range(count):
            posted = await client.post(
                "/api/sentiments",
                json={"user_id": "steady", "emotion": "calm", "intensity": n / count},
            )
            health = await client.get("/health")
            answers.append((posted.status_code, health.status_code))
            await asyncio.sleep(0.1)
    return answers


def test_a_thousand_slow_connections_do_not_starve_other_clients(guarded_stack: Stack) -> None:
    port = guarded_stack.config.ports["gateway"]

    async def scenario() -> tuple[list[str], list[tuple[int, int]]]:
        seen: list[str] = []
        slow = [
            asyncio.create_task(_slow_client(port, "body" if n % 2 else "headers", seen))
            for n in range(SLOW_CONNECTIONS)
        ]
        await asyncio.sleep(1)  # all of them connected and trickling
        answers = await _normal_requests(guarded_stack.gateway, 30)
        await asyncio.gather(*slow)
        return seen, answers

    seen, answers = asyncio.run(scenario())
    # Every normal request was answered as usual while the slow ones were held open.
    assert Counter(answers) == Counter({(201, 200): 30})
    # And every slow request was cut off by its deadline with 408, none left open.
    outcomes = Counter(seen)
    assert outcomes["HTTP/1.1 408 Request Timeout"] == SLOW_CONNECTIONS, outcomes


def test_connections_per_client_address_are_capped(stack: Stack) -> None:
    """The default stack lets one address hold at most 256 connections to the gateway;
    the next is told 429, and other addresses are unaffected."""
    port = stack.config.ports["gateway"]

    async def scenario() -> tuple[bytes, int]:
        held = []
        for _ in range(256):
            held.append(
                await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
            )
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.3", 0)
        )
        refused = await asyncio.wait_for(reader.read(1000), 5)
        async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as client:
            other = (await client.get("/health")).status_code
        for _, held_writer in [*held, (reader, writer)]:
            held_writer.close()
        return refused, other

    refused, other = asyncio.run(scenario())
    assert refused.startswith(b"HTTP/1.1 429 ")
    assert b"open connections from one address" in refused
    assert other == 200


def test_a_large_body_without_a_role_credential_is_not_streamed(anonymous: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * 1024

    response = anonymous.post(
        "/api/vlogs/upload/raw", content=chunks(), headers={"Content-Type": "video/mp4"}
    )
    assert response.status_code == 401
    assert "role or participant credential" in response.json()["detail"]["error"]


def _urllib_post(url: str, body: bytes, token: str | None) -> tuple[int, dict]:
    """A POST as Python's urllib sends it: the whole body first (and Connection:
    close), and only then the answer is read."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


@pytest.mark.parametrize("through", ["gateway", "ingest"])
@pytest.mark.parametrize(("token", "status"), [(None, 401), ("device", 413)])
def test_an_early_refusal_reaches_a_client_that_sends_everything_first(
    stack: Stack, through: str, token: str | None, status: int
) -> None:
    """A 30 MB body refused before it is read (no credential: 401; too large: 413) was
    answered and the socket closed with the body unread, so the kernel reset the
    connection and urllib saw "Connection reset by peer". Now the rest of the body is
    read and dropped after the answer (a lingering close)."""
    body = b'{"emotion": "calm", "note": "' + b"x" * (30 * 1024 * 1024) + b'"}'
    url = f"{stack.config.url(through)}/api/sentiments"
    got, answer = _urllib_post(url, body, TOKENS[token] if token else None)
    assert got == status
    assert answer["code"] == status
    assert answer["detail"]["error"]
