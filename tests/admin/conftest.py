"""The `admin` and `anonymous` clients talk to the admin app in process (tests/conftest.py
`in_process`) on the session's database; tests of the companion app's front end, CORS
and the rate limits keep stacks of their own, and what crosses the gateway is checked
by tests/e2e."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import InProcess


@pytest.fixture
def admin(admin_app: InProcess) -> Iterator[httpx.Client]:
    with admin_app.client("admin") as client:
        yield client


@pytest.fixture
def anonymous(admin_app: InProcess) -> Iterator[httpx.Client]:
    with admin_app.client() as client:
        yield client
