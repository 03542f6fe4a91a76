"""Ingest tests talk to the ingest app in process (tests/conftest.py `in_process`), on
the session's database; the gateway's relaying of the same routes is checked by
tests/e2e (every read route with every credential). Each test writes under
participant ids of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import InProcess


def new_participant() -> str:
    return f"P-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def participant() -> str:
    return new_participant()


@pytest.fixture
def device(ingest_app: InProcess) -> Iterator[httpx.Client]:
    with ingest_app.client("device") as client:
        yield client


@pytest.fixture
def viewer(ingest_app: InProcess) -> Iterator[httpx.Client]:
    with ingest_app.client("viewer") as client:
        yield client
