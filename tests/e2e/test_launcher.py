"""`make run`'s launcher as a user meets it: a real process with the embedded database."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
from pymongo import MongoClient

from services.launcher.config import local_mongodb_uri
from tests.support import REPO, TOKENS, bearer, free_port, http_ok, wait_until

PORT_NAMES = ("GATEWAY", "INGEST", "MEDIA", "ADMIN", "DB")


def launcher_env(data_dir: Path, ports: dict[str, int], **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EMOGO_") and k not in ("MONGODB_URI", "DB_NAME")
    }
    env.update({f"EMOGO_{name}_PORT": str(port) for name, port in ports.items()})
    env.update({"EMOGO_DATA_DIR": str(data_dir), **extra})
    return env


def launch(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.launcher"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_with_ctrl_c(launcher: subprocess.Popen[bytes]) -> list[psutil.Process]:
    children = psutil.Process(launcher.pid).children(recursive=True)
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(60) == 0
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    return gone


def test_launcher_runs_restarts_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in PORT_NAMES}
    gateway = f"http://127.0.0.1:{ports['GATEWAY']}"
    output = tmp_path / "launcher.out"
    launcher = launch(launcher_env(data_dir, ports), output)
    try:
        wait_until(lambda: "EmoGo is running" in output.read_text(), 90, "the stack to start")
        printed = output.read_text()
        assert f"{gateway}/export" in printed
        assert f"{gateway}/docs" in printed

        # Credentials were generated into a file only the owner can read, and printed.
        credentials = data_dir / "credentials.env"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        tokens = dict(
            line.split("=", 1) for line in credentials.read_text().splitlines() if "=" in line
        )
        assert set(tokens) == {
            "EMOGO_ADMIN_TOKEN",
            "EMOGO_VIEWER_TOKEN",
            "EMOGO_DEVICE_TOKEN",
            "EMOGO_SECRET_KEY",
            "EMOGO_SERVICE_TOKEN",
        }
        assert all(len(token) >= 32 for token in tokens.values())
        assert tokens["EMOGO_VIEWER_TOKEN"] in printed

        health = httpx.get(f"{gateway}/health")
        assert health.status_code == 200
        assert health.json()["database"] == "connected"
        admin = {"Authorization": f"Bearer {tokens['EMOGO_ADMIN_TOKEN']}"}
        assert httpx.get(f"{gateway}/api/v1/whoami", headers=admin).json()["role"] == "admin"

        # Something written to the embedded database, and a provider key encrypted
        # under the generated secret key...
        db_uri = local_mongodb_uri(ports["DB"])
        with MongoClient(db_uri) as client:
            client.emogo.restart_check.insert_one({"_id": "kept", "value": 42})
        httpx.post(f"{gateway}/api/v1/create_user", json={"user_id": "kept-user"}, headers=admin)
        key = {"user_id": "kept-user", "openai_api_key": "sk-kept-0123456789abcdef"}
        httpx.post(f"{gateway}/api/v1/update_user_config", json=key, headers=admin)

        # A child that dies is reported loudly and brought back.
        ingest = next(
            p
            for p in psutil.Process(launcher.pid).children()
            if "services.ingest" in " ".join(p.cmdline())
        )
        ingest.kill()
        wait_until(lambda: "ingest DIED" in output.read_text(), 20, "the death report")
        wait_until(lambda: "ingest is back" in output.read_text(), 60, "ingest to be restarted")
        assert httpx.get(f"{gateway}/health").status_code == 200

        stop_with_ctrl_c(launcher)
        assert "Stopped." in output.read_text()

        # ...is still there after a restart, which reuses the credentials file and
        # lets the environment override a token.
        output2 = tmp_path / "launcher2.out"
        launcher = launch(
            launcher_env(data_dir, ports, EMOGO_VIEWER_TOKEN=TOKENS["viewer"]), output2
        )
        wait_until(lambda: "EmoGo is running" in output2.read_text(), 90, "the restart")
        assert httpx.get(f"{gateway}/api/v1/whoami", headers=admin).status_code == 200
        assert (
            httpx.get(f"{gateway}/api/v1/whoami", headers=bearer("viewer")).json()["role"]
            == "viewer"
        )
        with MongoClient(db_uri) as client:
            assert client.emogo.restart_check.find_one({"_id": "kept"})["value"] == 42
        config = httpx.get(f"{gateway}/api/v1/get_user_config/kept-user", headers=admin).json()
        assert config["keys"]["openai_api_key"] == "****cdef"  # still decrypts
        stop_with_ctrl_c(launcher)
    finally:
        if launcher.poll() is None:
            for child in psutil.Process(launcher.pid).children(recursive=True):
                child.kill()
            launcher.kill()
            launcher.wait()


def test_busy_port_gives_a_clear_message(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["GATEWAY"]))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "services.launcher"],
            cwd=REPO,
            env=launcher_env(tmp_path / "data", ports),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"Port {ports['GATEWAY']}" in result.stderr
    assert "already in use" in result.stderr
    assert "EMOGO_GATEWAY_PORT" in result.stderr
    # Nothing was started.
    assert not http_ok(f"http://127.0.0.1:{ports['INGEST']}/health")()


def test_bad_configuration_stops_before_starting(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    env = launcher_env(tmp_path / "data", ports, EMOGO_GATEWAY_PORT="eighty")
    result = subprocess.run(
        [sys.executable, "-m", "services.launcher"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "EMOGO_GATEWAY_PORT" in result.stderr
    assert "whole number" in result.stderr
