"""The real stack, started the way the launcher starts it, checked through the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.launcher.supervisor import Supervisor
from tests.conftest import run_stack
from tests.support import TOKENS, basic, bearer, http_ok, wait_until


@pytest.fixture(scope="module")
def stack(
    mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Supervisor, str]]:
    """A stack of its own: these tests stop and restart services."""
    with run_stack(mongodb_uri, tmp_path_factory.mktemp("stack"), "emogo_e2e_stack") as running:
        yield running.supervisor, running.gateway


def test_health_shows_every_service_and_the_database(stack: tuple[Supervisor, str]) -> None:
    _, gateway = stack
    response = httpx.get(f"{gateway}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "connected"
    assert body["timestamp"]
    for name in ("ingest", "media", "admin"):
        assert body["services"][name]["status"] == "up"
        assert body["services"][name]["database"] == "connected"


def test_proxied_request_with_each_kind_of_credential(stack: tuple[Supervisor, str]) -> None:
    _, gateway = stack
    assert (
        httpx.get(f"{gateway}/api/v1/whoami", headers=bearer("device")).json()["role"] == "device"
    )
    browser = httpx.get(f"{gateway}/api/v1/whoami", headers=basic("viewer", TOKENS["viewer"]))
    assert browser.status_code == 200
    assert browser.json()["role"] == "viewer"


def test_requests_without_valid_credentials_are_refused(stack: tuple[Supervisor, str]) -> None:
    _, gateway = stack
    anonymous = httpx.get(f"{gateway}/api/v1/whoami")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert anonymous.json()["code"] == 401
    assert (
        httpx.get(f"{gateway}/api/v1/whoami", headers=basic("viewer", "guess-guess")).status_code
        == 401
    )


def test_docs_of_every_service_through_the_gateway(stack: tuple[Supervisor, str]) -> None:
    _, gateway = stack
    index = httpx.get(f"{gateway}/docs")
    assert index.status_code == 200
    for name in ("gateway", "ingest", "media", "admin"):
        assert f'href="/docs/{name}"' in index.text
        schema = httpx.get(f"{gateway}/docs/{name}/openapi.json")
        assert schema.status_code == 200
        assert schema.json()["info"]["title"] == f"EmoGo {name}"
        assert httpx.get(f"{gateway}/docs/{name}").status_code == 200
    assert "/docs" in httpx.get(f"{gateway}/").text


def test_a_stopped_service_gives_503_and_recovers(stack: tuple[Supervisor, str]) -> None:
    supervisor, gateway = stack
    supervisor.processes["media"].kill()
    supervisor.processes["media"].wait()
    down = httpx.get(f"{gateway}/docs/media/openapi.json")
    assert down.status_code == 503
    assert down.json()["detail"]["service"] == "media"
    health = httpx.get(f"{gateway}/health")
    assert health.status_code == 503
    assert health.json()["services"]["media"]["status"] == "down"
    assert health.json()["services"]["ingest"]["status"] == "up"
    # Other services are unaffected.
    assert httpx.get(f"{gateway}/api/v1/whoami", headers=bearer("admin")).status_code == 200

    supervisor.start("media")
    supervisor.wait_ready("media")
    assert httpx.get(f"{gateway}/docs/media/openapi.json").status_code == 200
    wait_until(http_ok(f"{gateway}/health"), 10, "aggregate health to recover")


def test_the_export_page_survives_a_service_that_is_down(
    stack: tuple[Supervisor, str],
) -> None:
    supervisor, gateway = stack
    viewer = basic("viewer", TOKENS["viewer"])
    supervisor.processes["ingest"].kill()
    supervisor.processes["ingest"].wait()
    try:
        page = httpx.get(f"{gateway}/export", headers=viewer, timeout=30)
        assert page.status_code == 200
        assert "The ingest service is not answering" in page.text
        assert 'id="vlogs"' in page.text  # media's part still renders
        assert "Traceback" not in page.text
        export = httpx.get(f"{gateway}/api/export/sentiments.csv", headers=viewer, timeout=30)
        assert export.status_code == 503
        assert export.json()["detail"]["service"] == "ingest"
    finally:
        supervisor.start("ingest")
        supervisor.wait_ready("ingest")
    assert "not answering" not in httpx.get(f"{gateway}/export", headers=viewer).text
