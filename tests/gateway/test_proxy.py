"""The gateway in front of a real upstream process: streaming, headers, failures."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest

from services.gateway.schemas import GatewayHealth
from tests.support import (
    TOKENS,
    PeakMemory,
    free_port,
    http_ok,
    service_environ,
    start_python,
    stop,
    wait_until,
)

# Processes of its own (see pyproject.toml markers).
pytestmark = pytest.mark.slow

MiB = 1024 * 1024
# A body far larger than the memory the gateway may grow by while passing it on.
LARGE_BODY = 256 * MiB
MAX_GROWTH = 64 * MiB


@dataclass
class ProxyRig:
    gateway: subprocess.Popen[bytes]
    url: str
    echo_url: str
    log_dir: Path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyRig]:
    folder = tmp_path_factory.mktemp("proxy")
    echo_port, gateway_port = free_port(), free_port()
    echo = start_python(
        [
            "-m",
            "uvicorn",
            "tests.gateway.echo_upstream:app",
            "--port",
            str(echo_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {},
        folder / "echo.log",
    )
    echo_url = f"http://127.0.0.1:{echo_port}"
    env = service_environ(
        "mongodb://127.0.0.1:9",
        folder,
        "unused",
        EMOGO_GATEWAY_PORT=str(gateway_port),
        EMOGO_MEDIA_URL=echo_url,
        EMOGO_ADMIN_URL=echo_url,
        # Nothing listens here: the ingest service is "down".
        EMOGO_INGEST_URL=f"http://127.0.0.1:{free_port()}",
        EMOGO_GATEWAY_READ_TIMEOUT="2",
        EMOGO_GATEWAY_WRITE_TIMEOUT="2",
    )
    gateway = start_python(["-m", "services.gateway"], env, folder / "gateway.log")
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_until(http_ok(f"{echo_url}/stats"), 30, "the echo upstream")
        wait_until(http_ok(f"{url}/ready"), 30, "the gateway")
        yield ProxyRig(gateway, url, echo_url, folder / "logs")
    finally:
        stop(gateway)
        stop(echo)


def post_large_body(url: str, body: Iterator[bytes], timeout: float) -> httpx.Response:
    """A body of LARGE_BODY bytes, streamed: only a request with a role credential
    streams a large body through the gateway."""
    return httpx.post(
        url,
        content=body,
        headers={
            "Content-Length": str(LARGE_BODY),
            "Authorization": f"Bearer {TOKENS['device']}",
        },
        timeout=timeout,
    )


def test_request_reaches_upstream_with_path_query_and_forwarding_headers(rig: ProxyRig) -> None:
    response = httpx.post(
        f"{rig.url}/api/vlogs/echo/a%20b?user_id=p1&tag=x%26y",
        content=b"hello",
        headers={
            "X-Request-ID": "trace-123",
            "Connection": "X-Client-Hop",
            "X-Client-Hop": "do-not-forward",
            "Authorization": f"Bearer {TOKENS['device']}",
        },
    )
    assert response.status_code == 200
    seen = response.json()
    headers = dict(seen["headers"])
    assert seen["path"] == "/api/vlogs/echo/a%20b"
    assert seen["query"] == "user_id=p1&tag=x%26y"
    assert seen["size"] == 5
    assert headers["x-request-id"] == "trace-123"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["authorization"] == f"Bearer {TOKENS['device']}"
    assert "x-client-hop" not in headers
    # Downstream: the upstream's hop-by-hop headers are gone, the others kept, and
    # the request id is the one the client sent, once.
    assert "x-upstream-private" not in response.headers
    assert "keep-alive" not in response.headers
    assert response.headers["x-upstream-public"] == "kept"
    assert response.headers.get_list("x-request-id") == ["trace-123"]


def test_encoded_bodies_pass_unchanged(rig: ProxyRig) -> None:
    response = httpx.get(f"{rig.url}/api/vlogs/gzip")
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "compressed hello " * 100


def test_request_id_is_made_when_the_client_sends_none(rig: ProxyRig) -> None:
    response = httpx.get(f"{rig.url}/api/v1/echo")
    made = response.headers["x-request-id"]
    assert len(made) == 32
    assert dict(response.json()["headers"])["x-request-id"] == made


def test_down_service_gives_503_naming_it(rig: ProxyRig) -> None:
    response = httpx.get(f"{rig.url}/api/sentiments")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == 503
    assert body["detail"]["service"] == "ingest"
    assert "ingest" in body["detail"]["error"]


def test_slow_service_gives_504(rig: ProxyRig) -> None:
    response = httpx.get(f"{rig.url}/api/vlogs/slow?seconds=5", timeout=20)
    assert response.status_code == 504
    assert response.json()["detail"]["service"] == "media"


def test_service_that_stops_taking_a_streamed_body_gives_504(rig: ProxyRig) -> None:
    """Past the kernel's buffers a hung service stops taking bytes; the gateway gives
    up after its write timeout instead of holding both connections for ever."""

    def body() -> Iterator[bytes]:
        for _ in range(LARGE_BODY // MiB):
            yield b"\x01" * MiB

    started = time.monotonic()
    response = post_large_body(f"{rig.url}/api/vlogs/stall", body(), timeout=60)
    assert response.status_code == 504
    assert response.json()["detail"]["service"] == "media"
    assert time.monotonic() - started < 30


def test_a_client_that_pauses_is_not_cut_off_by_the_write_timeout(rig: ProxyRig) -> None:
    """The write timeout counts the service's time to take each piece, not the
    client's time to send the next: a phone on a poor network pauses longer."""
    pieces = [bytes([n]) * (256 * 1024) for n in range(3)]

    def body() -> Iterator[bytes]:
        for piece in pieces:
            yield piece
            time.sleep(3)  # longer than the gateway's 2 s write timeout

    response = httpx.post(
        f"{rig.url}/api/vlogs/echo",
        content=body(),
        # Unknown length: streamed through, which takes a role credential.
        headers={"Authorization": f"Bearer {TOKENS['device']}"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json()["size"] == sum(len(p) for p in pieces)
    assert response.json()["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_gateway_health_reports_each_service(rig: ProxyRig) -> None:
    response = httpx.get(f"{rig.url}/health")
    # The echo upstream has no /ready and ingest is down: unhealthy, each one named.
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "disconnected"
    assert set(body["services"]) == {"ingest", "media", "admin"}
    assert body["services"]["ingest"]["status"] == "down"
    # As documented: the 503 is the report itself, not the error envelope.
    document = httpx.get(f"{rig.url}/docs/gateway/openapi.json").json()
    for status in ("200", "503"):
        content = document["paths"]["/health"]["get"]["responses"][status]["content"]
        assert content["application/json"]["schema"] == {
            "$ref": "#/components/schemas/GatewayHealth"
        }
    msgspec.convert(body, GatewayHealth, strict=False)


def test_large_upload_streams_through_in_flat_memory(rig: ProxyRig) -> None:
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(LARGE_BODY // MiB):
            digest.update(block)
            yield block

    with PeakMemory(rig.gateway.pid) as memory:
        response = post_large_body(f"{rig.url}/api/vlogs/echo", body(), timeout=120)
    assert response.status_code == 200
    assert response.json()["size"] == LARGE_BODY
    assert response.json()["sha256"] == digest.hexdigest()
    assert memory.growth < MAX_GROWTH, f"gateway grew by {memory.growth / MiB:.0f} MiB"


def test_large_download_streams_through_in_flat_memory(rig: ProxyRig) -> None:
    received = 0
    with (
        PeakMemory(rig.gateway.pid) as memory,
        httpx.stream(
            "GET", f"{rig.url}/api/vlogs/stream?size={LARGE_BODY}", timeout=120
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == str(LARGE_BODY)
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received == LARGE_BODY
    assert memory.growth < MAX_GROWTH, f"gateway grew by {memory.growth / MiB:.0f} MiB"


def test_upstream_stream_is_closed_when_the_client_goes_away(rig: ProxyRig) -> None:
    before = httpx.get(f"{rig.echo_url}/stats").json()["aborted_streams"]
    with httpx.stream(
        "GET", f"{rig.url}/api/vlogs/stream?size={4 * 1024 * MiB}", timeout=30
    ) as response:
        for index, _ in enumerate(response.iter_raw()):
            if index > 8:
                break
    # Closing our side mid-transfer must make the gateway drop its upstream stream.
    wait_until(
        lambda: httpx.get(f"{rig.echo_url}/stats").json()["aborted_streams"] > before,
        20,
        "the upstream stream to be aborted",
    )
    assert rig.gateway.poll() is None
    assert httpx.get(f"{rig.url}/ready").status_code == 200


def test_gateway_log_has_request_lines_without_secrets(rig: ProxyRig) -> None:
    response = httpx.get(
        f"{rig.url}/api/v1/echo?api_key=abc123secret",
        headers={"Authorization": f"Bearer {TOKENS['admin']}", "X-Request-ID": "log-check-1"},
    )
    assert response.status_code == 200
    log = rig.log_dir / "gateway.log"
    wait_until(lambda: "log-check-1" in log.read_text(), 10, "the access line")
    text = log.read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("request_id") == "log-check-1" and "path" in e]
    assert [e["path"] for e in access] == ["/api/v1/echo"]
    assert TOKENS["admin"] not in text
    assert "abc123secret" not in text
