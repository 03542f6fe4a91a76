"""Session fixtures: a real MongoDB wire server (SecantusDB) on a free port."""

from __future__ import annotations

import importlib
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from services.common.runtime.settings import Credentials
from services.launcher.config import StackConfig, local_mongodb_uri
from services.launcher.database import mongo_ready, secantus_argv
from services.launcher.supervisor import Supervisor, stack_specs
from tests.support import TOKENS, bearer, free_port, service_environ, stack_config, wait_until


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


@dataclass
class Stack:
    """Every service and the gateway as real processes, the way `make run` starts them."""

    supervisor: Supervisor
    config: StackConfig
    db_name: str

    @property
    def gateway(self) -> str:
        return self.config.url("gateway")

    def client(self, role: str | None = None) -> httpx.Client:
        """An HTTP client of the gateway, signed in as `role` (anonymous when None)."""
        headers = bearer(role) if role else {}
        return httpx.Client(base_url=self.gateway, headers=headers, timeout=30)


@contextmanager
def run_stack(mongodb_uri: str, data_dir: Path, db_name: str, **extra_env: str) -> Iterator[Stack]:
    config = stack_config(
        data_dir, Credentials(**TOKENS), mongodb_uri, {"DB_NAME": db_name, **extra_env}
    )
    supervisor = Supervisor(stack_specs(config))
    try:
        supervisor.start_all()
        yield Stack(supervisor, config, db_name)
    finally:
        supervisor.stop_all()


# The session stack's database deadline: the production default. Rollups fold records
# older than twice the deadline, so a test that waits for a fold waits at least that long.
SESSION_DB_TIMEOUT_SECONDS = 5
FOLD_WAIT_SECONDS = 2 * SESSION_DB_TIMEOUT_SECONDS + 30


# The session stack's settings, which the in-process apps read too.
SESSION_ENV = dict(
    EMOGO_MEDIA_MAX_UPLOAD_BYTES=str(16 * 1024 * 1024),
    EMOGO_SIGN_IN_REQUESTS_PER_MINUTE="10000",
    EMOGO_ENROLMENT_ATTEMPTS_PER_ADDRESS="10000",
    # The tests' webhook receivers listen on loopback (refused by default: their
    # own test starts a stack without this).
    EMOGO_WEBHOOK_ALLOW_PRIVATE="true",
    # No internet here: maps show their offline drawing (tests/gateway/test_maps.py
    # starts a tile server of its own).
    EMOGO_MAP_TILES="off",
    EMOGO_DB_TIMEOUT=str(SESSION_DB_TIMEOUT_SECONDS),
)


@pytest.fixture(scope="session")
def stack(mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the session. Tests that share it keep apart by participant id;
    tests that stop services start a stack of their own."""
    # A small upload limit, so that tests can exceed it cheaply; and room for the many
    # sign-ins and enrolments tests make from one address (the limiters have tests of
    # their own).
    with run_stack(
        mongodb_uri, tmp_path_factory.mktemp("stack"), "emogo_session", **SESSION_ENV
    ) as running:
        yield running


# The in-process apps running now: tests that wait for background work to finish wait
# for theirs too (tests/media/conftest.py `assert_nothing_half_stored`).
RUNNING_APPS: list[InProcess] = []


class _SharedTransport(httpx.BaseTransport):
    """The running app's transport, lent to another client: closing that client leaves
    the app running."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = self.inner.handle_request(request)
        return response


class InProcess:
    """A service's app (its own `create_app(settings)`) inside the test process, on the
    session's database: route behaviour without the gateway hop or another process.
    What only processes show (proxying, workers, faults) stays with the stack."""

    def __init__(self, running: TestClient[Any]) -> None:
        self.running = running

    @property
    def temp_dir(self) -> Path | None:
        """Where the app keeps temporary files (media: uploads and previews in progress)."""
        temp_dir: Path | None = getattr(self.running.app.state.settings, "temp_dir", None)
        return temp_dir

    def client(self, role: str | None = None) -> httpx.Client:
        """A client of the app signed in as `role`, sharing the one running app (one
        event loop, one lifespan)."""
        return httpx.Client(
            transport=_SharedTransport(self.running._transport),
            base_url=str(self.running.base_url),
            headers=bearer(role) if role else {},
        )


@contextmanager
def in_process(service: str, stack: Stack, data_dir: Path, **extra_env: str) -> Iterator[InProcess]:
    """`service`'s app built from the settings a process of the session's stack reads."""
    environ = service_environ(
        stack.config.mongodb_uri,
        data_dir,
        stack.db_name,
        **{**SESSION_ENV, **extra_env},
    )
    module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    app = module.create_app(settings_module.load_settings(environ))
    with TestClient(app, base_url="http://127.0.0.1", timeout=30) as running:
        started = InProcess(running)
        RUNNING_APPS.append(started)
        try:
            yield started
        finally:
            RUNNING_APPS.remove(started)


def in_process_client(app_fixture: str, role: str | None, name: str) -> Any:
    """A fixture: a client of the in-process app `app_fixture`, signed in as `role`
    (anonymous when None); the in-process twin of `_signed_in_client`."""

    @pytest.fixture(name=name)
    def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
        app: InProcess = request.getfixturevalue(app_fixture)
        with app.client(role) as signed_in:
            yield signed_in

    return client


@pytest.fixture(scope="module")
def ingest_app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    # Per module: Beanie binds its documents to one client and event loop, and domain
    # tests (tests/ingest/test_rollups.py) bind them to their own.
    with in_process("ingest", stack, tmp_path_factory.mktemp("ingest_app")) as app:
        yield app


@pytest.fixture(scope="module")
def media_app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process("media", stack, tmp_path_factory.mktemp("media_app")) as app:
        yield app


@pytest.fixture(scope="module")
def admin_app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process("admin", stack, tmp_path_factory.mktemp("admin_app")) as app:
        yield app


def stack_of_its_own(db_name: str, **extra_env: str) -> Any:
    """A module fixture: a stack with a database and settings of its own, for tests that
    change settings or would disturb the session's stack."""

    @pytest.fixture(scope="module")
    def own_stack(mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        with run_stack(
            mongodb_uri, tmp_path_factory.mktemp(db_name), db_name, **extra_env
        ) as running:
            yield running

    return own_stack


def _signed_in_client(role: str | None, name: str) -> Any:
    """A fixture: a client of the session's gateway, signed in as `role`."""

    @pytest.fixture(name=name)
    def client(stack: Stack) -> Iterator[httpx.Client]:
        with stack.client(role) as signed_in:
            yield signed_in

    return client


device = _signed_in_client("device", "device")
viewer = _signed_in_client("viewer", "viewer")
admin = _signed_in_client("admin", "admin")
anonymous = _signed_in_client(None, "anonymous")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e starts processes of its own: `e2e` and `slow`. The
    long modules go first (the contract run, then e2e, then modules with slow tests),
    so that the test workers (`make test` runs several, each taking whole modules) do
    not end with one of them running a long module alone."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)
        if "contract" in item.path.parts:
            item.add_marker(pytest.mark.slow)
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(
        key=lambda item: (
            0
            if "contract" in item.path.parts
            else 1
            if "e2e" in item.path.parts
            else 2
            if item.path in slow_modules
            else 3
        )
    )
