"""Ingest tests talk to the ingest app in process (tests/conftest.py `in_process`), on
the session's database; the gateway's relaying of the same routes is checked by
tests/e2e (every read route with every credential). Each test writes under
participant ids of its own."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import in_process_client


def new_participant() -> str:
    return f"P-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def participant() -> str:
    return new_participant()


device = in_process_client("ingest_app", "device", "device")
viewer = in_process_client("ingest_app", "viewer", "viewer")
