"""Ingest tests talk to the session's real stack through the gateway, as phones and
researchers do. Each test writes under participant ids of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Stack


@pytest.fixture
def device(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client("device") as client:
        yield client


@pytest.fixture
def viewer(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client("viewer") as client:
        yield client


@pytest.fixture
def admin(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client("admin") as client:
        yield client


@pytest.fixture
def anonymous(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client


def new_participant() -> str:
    return f"P-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def participant() -> str:
    return new_participant()
