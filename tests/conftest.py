"""Session fixtures: a real MongoDB wire server (SecantusDB) on a free port."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.launcher import local_mongodb_uri, mongo_ready, secantus_argv
from tests.support import free_port, service_environ, wait_until


def start_secantus(storage: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    storage.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            secantus_argv(port, storage), stdout=out, stderr=subprocess.STDOUT
        )
    uri = local_mongodb_uri(port)
    try:
        wait_until(mongo_ready(uri), 30, "SecantusDB to accept connections")
    except AssertionError:
        process.kill()
        raise
    return process, uri


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("secantus")
    process, uri = start_secantus(folder / "data", folder / "secantus.log")
    yield uri
    process.terminate()
    process.wait(15)


@pytest.fixture
def db_name() -> str:
    """A database of its own for each test, so tests never see each other's data."""
    return f"emogo_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def service_env(mongodb_uri: str, tmp_path: Path, db_name: str) -> dict[str, str]:
    return service_environ(mongodb_uri, tmp_path, db_name)
