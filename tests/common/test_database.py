"""The Mongo lifespan, `/health` and `/ready`, against real SecantusDB servers."""

import gc
from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import load_settings
from tests.conftest import start_secantus
from tests.support import free_port, service_environ


def test_ready_pings_the_database(service_env: dict[str, str]) -> None:
    with TestClient(create_ingest(load_settings(service_env))) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "healthy"
        assert health.json()["service"] == "ingest"
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["database"] == "connected"
        # Times carry an explicit offset.
        assert ready.json()["timestamp"].endswith(("Z", "+00:00"))


# PyMongo's async monitor leaks its socket when the server closes it under a live
# client (upstream PYTHON-3923); the collect below keeps that warning inside this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_ready_turns_503_when_the_database_goes_away(tmp_path: Path) -> None:
    server, uri = start_secantus(tmp_path / "db", tmp_path / "db.log")
    try:
        settings = load_settings(service_environ(uri, tmp_path, "emogo_ready"))
        with TestClient(create_ingest(settings)) as client:
            assert client.get("/ready").status_code == 200
            server.terminate()
            server.wait(15)
            ready = client.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unhealthy"
            assert ready.json()["database"] == "disconnected"
            # Liveness does no I/O: the process itself is fine.
            assert client.get("/health").status_code == 200
    finally:
        if server.poll() is None:
            server.kill()
        gc.collect()


def test_start_up_fails_clearly_without_a_database(tmp_path: Path) -> None:
    unreachable = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    env = service_environ(unreachable, tmp_path, "emogo_none", EMOGO_DB_STARTUP_TIMEOUT="1")
    app = create_ingest(load_settings(env))
    with pytest.raises(ExceptionGroup) as caught, TestClient(app):
        pass
    assert caught.group_contains(
        RuntimeError, match="Cannot reach MongoDB.*MONGODB_URI", depth=None
    )
