"""A value that does not have the form a field needs is refused with the form in
words, never with the regex the services check it by nor in msgspec's notation
(Expected `float` <= 1.0): the export page, the TA's scripts and the companion app's
screens show these messages to people."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

# Each app's modules declare the patterns of its fields.
import services.admin.app
import services.gateway.app
import services.ingest.app
import services.media.app  # noqa: F401
from services.common.web.schemas import PATTERN_RULES
from tests.conftest import Stack

STUDY_RULE = "must be 2-63 characters: lower-case letters, digits and - (starting with a letter"
ONE_LINE_RULE = "without control characters (such as line breaks)"


def patterns_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["pattern"]} if isinstance(value.get("pattern"), str) else set()
        return found.union(*(patterns_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(patterns_in(v) for v in value))
    return set()


@pytest.mark.parametrize("document", ["ingest", "media", "admin", "gateway"])
def test_every_documented_pattern_has_its_rule_in_words(stack: Stack, document: str) -> None:
    served = httpx.get(f"{stack.gateway}/docs/{document}/openapi.json").json()
    patterns = patterns_in(served)
    assert patterns, "the document declares the form of some fields"
    assert patterns <= set(PATTERN_RULES), patterns - set(PATTERN_RULES)


# (role, method, path, query or body, field, how the reason starts)
REFUSALS = [
    ("viewer", "GET", "/api/sentiments", {"study_id": "X"}, "study_id", STUDY_RULE),
    ("viewer", "GET", "/api/vlogs", {"study_id": "X"}, "study_id", STUDY_RULE),
    ("viewer", "GET", "/api/export/gps.csv", {"study_id": "X"}, "study_id", STUDY_RULE),
    ("viewer", "GET", "/export", {"study_id": "X"}, "study_id", STUDY_RULE),
    ("admin", "POST", "/api/studies", {"study_id": "X", "name": "A study"}, "study_id", STUDY_RULE),
    (
        "admin",
        "POST",
        "/api/studies",
        {"study_id": "words-study", "name": "two\nlines"},
        "name",
        f"must be text {ONE_LINE_RULE}",
    ),
    (
        "admin",
        "POST",
        "/api/studies",
        {"study_id": "words-study", "name": "A study", "webhook_url": "ftp://example.org"},
        "webhook_url",
        'must be an http(s) URL without spaces, or ""',
    ),
    (
        "device",
        "POST",
        "/api/vlogs",
        {"user_id": "P001", "video_url": "not a link"},
        "video_url",
        "must be an http(s) URL without spaces",
    ),
    ("viewer", "GET", "/api/sentiments", {"limit": "many"}, "limit", "must be a whole number"),
    ("viewer", "GET", "/api/gps", {"limit": 0}, "limit", "must be at least 1"),
    ("viewer", "GET", "/export/map", {"user_id": "P001", "days": -1}, "days", "must be at least 0"),
    (
        "device",
        "POST",
        "/api/sentiments",
        {"user_id": "P001", "emotion": "calm", "intensity": "high"},
        "intensity",
        "must be a number, not text",
    ),
    (
        "device",
        "POST",
        "/api/sentiments",
        {"user_id": "P001", "emotion": "calm", "intensity": 7},
        "intensity",
        "must be at most 1",
    ),
    (
        None,
        "POST",
        "/api/v1/register_user",
        {"username": "two\nlines", "password": "long enough"},
        "username",
        f"must be 1-64 characters {ONE_LINE_RULE}",
    ),
]


@pytest.mark.parametrize(
    ("role", "method", "path", "sent", "field", "reason"),
    REFUSALS,
    ids=[f"{method} {path} {field}" for _, method, path, _, field, _ in REFUSALS],
)
def test_a_value_of_the_wrong_form_is_refused_with_the_rule_in_words(
    stack: Stack,
    role: str | None,
    method: str,
    path: str,
    sent: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    with stack.client(role) as client:
        answer = client.request(
            method, path, **({"params": sent} if method == "GET" else {"json": sent})
        )
    assert answer.status_code == 422, answer.text
    [problem] = [p for p in answer.json()["detail"]["errors"] if p["field"] == field]
    assert problem["reason"].startswith(reason), problem
    assert "regex" not in answer.text
    assert "(?!" not in answer.text
    assert "Expected `" not in answer.text
