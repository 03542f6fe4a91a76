"""The first-run MongoDB bootstrap against a SecantusDB that requires authentication,
as a command and at the admin service's start-up; and the old front end's open mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from services.launcher.config import local_mongodb_uri
from services.launcher.database import mongo_ready, secantus_argv
from tests.support import (
    REPO,
    free_port,
    http_ok,
    service_environ,
    start_python,
    stop,
    wait_until,
)

# Processes of its own (see pyproject.toml markers).
pytestmark = pytest.mark.slow

ROOT = ("root", "root-password-0123")
APP = ("emogo_app", "app-password-0123")


def start_admin(
    mongodb_uri: str, db_name: str, folder: Path, **extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = service_environ(mongodb_uri, folder, db_name, EMOGO_ADMIN_PORT=str(port), **extra)
    process = start_python(["-m", "services.admin"], env, folder / "admin.out")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{url}/ready"), 30, "the admin service")
    except AssertionError:
        stop(process)
        raise AssertionError((folder / "admin.out").read_text()[-3000:]) from None
    return process, url


@pytest.fixture
def auth_server(tmp_path: Path):
    """SecantusDB with an admin user and --auth, the application user absent."""
    storage, port = tmp_path / "db", free_port()
    storage.mkdir()
    open_uri = local_mongodb_uri(port)
    server = subprocess.Popen(
        secantus_argv(port, storage), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    wait_until(mongo_ready(open_uri), 30, "SecantusDB")
    with MongoClient(open_uri) as client:
        client.admin.command(
            "createUser", ROOT[0], pwd=ROOT[1], roles=[{"role": "root", "db": "admin"}]
        )
    server.terminate()
    server.wait(15)
    server = subprocess.Popen(
        [*secantus_argv(port, storage), "--auth"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    wait_until(mongo_ready(open_uri), 30, "SecantusDB with --auth")
    yield port
    server.terminate()
    server.wait(15)


def app_uri(port: int) -> str:
    return f"mongodb://{APP[0]}:{APP[1]}@127.0.0.1:{port}/emogo_boot?authSource=admin"


def run_bootstrap(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.admin.bootstrap"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bootstrap_command_creates_the_application_user_once(auth_server: int) -> None:
    uri = app_uri(auth_server)
    base = {"MONGODB_URI": uri, "DB_NAME": "emogo_boot"}
    with pytest.raises(OperationFailure), MongoClient(uri) as client:
        client["emogo_boot"].list_collection_names()

    without_admin = run_bootstrap(base)
    assert without_admin.returncode == 1
    assert "MONGODB_ADMIN_PASSWORD" in without_admin.stderr

    wrong_admin = run_bootstrap(
        {**base, "MONGODB_ADMIN_USERNAME": ROOT[0], "MONGODB_ADMIN_PASSWORD": "nope"}
    )
    assert wrong_admin.returncode == 1
    assert "admin credentials" in wrong_admin.stderr

    admin = {**base, "MONGODB_ADMIN_USERNAME": ROOT[0], "MONGODB_ADMIN_PASSWORD": ROOT[1]}
    first = run_bootstrap(admin)
    assert first.returncode == 0, first.stderr
    assert "Created user 'emogo_app'" in first.stdout
    with MongoClient(uri) as client:
        client["emogo_boot"]["check"].insert_one({"ok": True})
        assert client["emogo_boot"]["check"].count_documents({}) == 1

    second = run_bootstrap(admin)
    assert second.returncode == 0
    assert "can read and write" in second.stdout
    with MongoClient(local_mongodb_uri(auth_server), username=ROOT[0], password=ROOT[1]) as client:
        users = client.admin.command("usersInfo", APP[0])["users"]
    assert len(users) == 1
    assert users[0]["roles"] == [{"role": "readWrite", "db": "emogo_boot"}]


def test_the_admin_service_bootstraps_at_start_up(auth_server: int, tmp_path: Path) -> None:
    process, url = start_admin(
        app_uri(auth_server),
        "emogo_boot",
        tmp_path,
        MONGODB_ADMIN_USERNAME=ROOT[0],
        MONGODB_ADMIN_PASSWORD=ROOT[1],
    )
    try:
        assert httpx.get(f"{url}/ready").json()["database"] == "connected"
        registered = httpx.post(
            f"{url}/api/v1/register_user", json={"username": "boot", "password": "long enough"}
        )
        assert registered.status_code == 200
    finally:
        stop(process)
    # The admin password never reached the log.
    assert ROOT[1] not in (tmp_path / "admin.out").read_text()


def test_start_up_says_what_to_fix_when_nothing_works(auth_server: int, tmp_path: Path) -> None:
    port = free_port()
    env = service_environ(app_uri(auth_server), tmp_path, "emogo_boot", EMOGO_ADMIN_PORT=str(port))
    process = start_python(["-m", "services.admin"], env, tmp_path / "admin.out")
    try:
        assert process.wait(60) != 0
    finally:
        stop(process)
    output = (tmp_path / "admin.out").read_text()
    assert "MONGODB_ADMIN_USERNAME and MONGODB_ADMIN_PASSWORD" in output


def test_the_old_front_end_mode_is_explicit(mongodb_uri: str, db_name: str, tmp_path: Path) -> None:
    process, url = start_admin(
        mongodb_uri, db_name, tmp_path, EMOGO_ADMIN_OPEN_USER_ENDPOINTS="true"
    )
    try:
        user_id = httpx.post(
            f"{url}/api/v1/register_user", json={"username": "legacy", "password": "long enough"}
        ).json()["user_id"]
        # No credential at all, as the unchanged old front end sends.
        assert httpx.post(f"{url}/api/v1/create_user", json={"user_id": user_id}).status_code == 200
        assert httpx.get(f"{url}/api/v1/list_characters/{user_id}").status_code == 200
        # Listing users and logs stays admin-only.
        assert httpx.get(f"{url}/api/v1/list_users").status_code == 401
    finally:
        stop(process)
