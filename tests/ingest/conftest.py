"""Ingest tests talk to the session's real stack through the gateway, as phones and
researchers do. Each test writes under participant ids of its own."""

from __future__ import annotations

import uuid

import pytest


def new_participant() -> str:
    return f"P-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def participant() -> str:
    return new_participant()
