"""Helpers the tests share: ports, tokens, environments, waiting for processes."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from services.common.research.audit import AuditEntry
from services.common.runtime.settings import DEFAULT_PORTS, Credentials
from services.launcher.config import StackConfig

REPO = Path(__file__).resolve().parent.parent
# Encrypts provider keys in the admin service under test.
SECRET_KEY = "test-secret-key-0123456789-0123456789-0123456789"
# The gateway's own credential towards the admin service (appending to the audit trail).
SERVICE_TOKEN = "test-service-token-0123456789"
TOKENS = {
    "admin": "test-admin-token-0123456789",
    "viewer": "test-viewer-token-0123456789",
    "device": "test-device-token-0123456789",
}


def audit_read(request_id: str, **fields: Any) -> AuditEntry:
    """An audit entry of one viewer's GPS read, as the gateway records it."""
    return AuditEntry(
        **{
            "time": datetime(2026, 12, 7, tzinfo=UTC),
            "credential_id": "env:viewer",
            "credential_name": "the environment's viewer token",
            "role": "viewer",
            "action": "GET /api/gps",
            "status": 200,
            "bytes": 10,
            "request_id": request_id,
            **fields,
        }
    )


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_environ(mongodb_uri: str, data_dir: Path, db_name: str, **extra: str) -> dict[str, str]:
    """The environment a service process (or settings loader) gets in tests."""
    return {
        "MONGODB_URI": mongodb_uri,
        "DB_NAME": db_name,
        "EMOGO_DATA_DIR": str(data_dir),
        "EMOGO_LOG_DIR": str(data_dir / "logs"),
        "EMOGO_ADMIN_TOKEN": TOKENS["admin"],
        "EMOGO_VIEWER_TOKEN": TOKENS["viewer"],
        "EMOGO_DEVICE_TOKEN": TOKENS["device"],
        "EMOGO_SECRET_KEY": SECRET_KEY,
        "EMOGO_SERVICE_TOKEN": SERVICE_TOKEN,
        "EMOGO_DB_STARTUP_TIMEOUT": "10",
        **extra,
    }


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_entries(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a service's log. Complete lines only: a running service may be
    writing the last one as it is read, and a reader can see part of it."""
    text = path.read_text()
    lines = text[: text.rfind("\n") + 1].splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def documented_path_form(client: httpx.Client, document: str, path: str) -> re.Pattern:
    """The pattern a service's OpenAPI document gives the one parameter in `path`."""
    operation = client.get(f"/docs/{document}/openapi.json").json()["paths"][path]["get"]
    [parameter] = [p for p in operation["parameters"] if p["in"] == "path"]
    return re.compile(parameter["schema"]["pattern"])


def start_python(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real Python child process run from the repository root, output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stack_config(
    data_dir: Path,
    credentials: Credentials,
    mongodb_uri: str | None,
    env: Mapping[str, str],
) -> StackConfig:
    """A stack on free ports, for tests and benchmarks; `mongodb_uri=None` embeds a database."""
    return StackConfig(
        data_dir=data_dir,
        host="127.0.0.1",
        ports={
            name: int(env.get(f"EMOGO_{name.upper()}_PORT") or free_port())
            for name in DEFAULT_PORTS
        },
        db_port=free_port(),
        external_mongodb_uri=mongodb_uri,
        credentials=credentials,
        credentials_file=data_dir / "unused.env",
        secret_key=SECRET_KEY,
        service_token=SERVICE_TOKEN,
        backup_dir=data_dir / "backups",
        backup_every_seconds=0.0,
        backup_keep=7,
        passthrough_env={**os.environ, **env},
    )


class PeakMemory:
    """Samples a process's resident memory in the background."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def viewer_in_chromium(driver: Any, **context_options: Any) -> tuple[Any, Any]:
    """Debian's chromium (scripts/ensure-chromium), driven by Playwright's `driver`,
    with a page signed in as the viewer: the browser and the page."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run scripts/ensure-chromium (make test does)"
    browser = driver.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
    )
    context = browser.new_context(
        http_credentials={"username": "viewer", "password": TOKENS["viewer"]}, **context_options
    )
    return browser, context.new_page()


def policy_refusals(page: Any) -> list[str]:
    """What the page's Content-Security-Policy stops from now on, as Chromium reports it
    on the console: a list that fills as the page runs."""
    refused: list[str] = []

    def note(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", note)
    return refused


def enrolled(stack: Any, study_id: str, user_ids: list[str]) -> dict[str, dict[str, str]]:
    """Enrols `user_ids` in the study (through the gateway, as phones do): each one's
    Authorization header."""
    with stack.client("admin") as admin, stack.client() as phone:
        issued = admin.post(f"/api/studies/{study_id}/participants", json={"user_ids": user_ids})
        assert issued.status_code == 201, issued.text
        tokens = {}
        for person in issued.json()["participants"]:
            answer = phone.post("/api/enrol", json={"study_id": study_id, "code": person["code"]})
            tokens[person["user_id"]] = {"Authorization": f"Bearer {answer.json()['token']}"}
        return tokens


def all_threads_stopped(pid: int) -> Callable[[], bool]:
    """Whether every thread of `pid` has stopped. A SIGSTOP is taken by one thread,
    which stops the others only once it runs: one waiting on the disk (the database's
    fsync) leaves the others serving for a while."""

    def check() -> bool:
        tasks = Path(f"/proc/{pid}/task")
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()
        ]
        return all(state in ("T", "t") for state in states)

    return check
