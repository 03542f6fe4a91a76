"""The Mongo lifespan, `/health` and `/ready`, in real service processes on SecantusDB.

These run the service as its own process rather than in-process: PyMongo's async
client can leak a monitor socket when it is closed while connecting (its connect
path closes the socket on OSError, not on cancellation), which a short-lived
in-process client hits and pytest reports as an unraisable ResourceWarning.
"""

import subprocess
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from services.launcher.config import local_mongodb_uri
from tests.conftest import start_secantus
from tests.support import (
    bearer,
    free_port,
    http_ok,
    service_environ,
    start_python,
    stop,
    wait_until,
)

# Processes of its own (see pyproject.toml markers).
pytestmark = pytest.mark.slow


def start_ingest(env: dict[str, str], folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = start_python(
        ["-m", "services.ingest"], {**env, "EMOGO_INGEST_PORT": str(port)}, folder / "ingest.out"
    )
    return process, f"http://127.0.0.1:{port}"


def test_ready_pings_the_database(service_env: dict[str, str], tmp_path: Path) -> None:
    service, url = start_ingest(service_env, tmp_path)
    try:
        wait_until(http_ok(f"{url}/ready"), 30, "the ingest service")
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "healthy"
        assert health["service"] == "ingest"
        ready = httpx.get(f"{url}/ready").json()
        assert ready["database"] == "connected"
        # Times carry an explicit offset.
        assert ready["timestamp"].endswith(("Z", "+00:00"))
    finally:
        stop(service)


def test_ready_turns_503_when_the_database_goes_away(tmp_path: Path) -> None:
    server, uri = start_secantus(tmp_path / "db", tmp_path / "db.log")
    service, url = start_ingest(service_environ(uri, tmp_path, "emogo_ready"), tmp_path)
    try:
        wait_until(http_ok(f"{url}/ready"), 30, "the ingest service")
        server.terminate()
        server.wait(15)
        ready = httpx.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["status"] == "unhealthy"
        assert ready.json()["database"] == "disconnected"
        # Liveness does no I/O: the process itself is fine.
        assert httpx.get(f"{url}/health").status_code == 200
        # A request that needs the database says so, without a traceback.
        write = httpx.post(
            f"{url}/api/sentiments",
            json={"user_id": "P1", "emotion": "calm", "intensity": 0.5},
            headers=bearer("device"),
            timeout=30,
        )
        assert write.status_code == 503
        assert write.headers["retry-after"] == "5"
        assert write.json()["detail"]["error"].startswith("The database is unavailable")
    finally:
        stop(service)
        if server.poll() is None:
            server.kill()


def test_start_up_fails_clearly_without_a_database(tmp_path: Path) -> None:
    unreachable = local_mongodb_uri(free_port())
    env = service_environ(unreachable, tmp_path, "emogo_none", EMOGO_DB_STARTUP_TIMEOUT="1")
    service, _ = start_ingest(env, tmp_path)
    try:
        assert service.wait(60) != 0
    finally:
        stop(service)
    output = (tmp_path / "ingest.out").read_text()
    assert "Cannot reach MongoDB for database 'emogo_none'" in output
    assert "Check MONGODB_URI" in output


def test_an_upgrade_replaces_the_unique_index_that_spanned_studies(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """A database from before studies has client ids unique per participant id across
    every study; the service builds the per-study index and then drops the old one."""
    with MongoClient(service_env["MONGODB_URI"]) as client:
        sentiments = client[service_env["DB_NAME"]]["sentiments"]
        sentiments.insert_one({"user_id": "P001", "client_id": "c1", "emotion": "calm"})
        sentiments.create_index(
            [("user_id", 1), ("client_id", 1)],
            name="participant_client_id_unique",
            unique=True,
            partialFilterExpression={"client_id": {"$type": "string"}},
        )
    service, url = start_ingest(service_env, tmp_path)
    try:
        wait_until(http_ok(f"{url}/ready"), 30, "the ingest service")
        with MongoClient(service_env["MONGODB_URI"]) as client:
            indexes = client[service_env["DB_NAME"]]["sentiments"].index_information()
        assert "participant_client_id_unique" not in indexes
        assert indexes["participant_client_id_study_unique"]["unique"] is True
    finally:
        stop(service)
