"""Hostile input on every route, generated from the four OpenAPI documents: each path,
query and header parameter an operation documents gets each hostile value, and each
operation with a body gets each hostile body, with the admin credential (so guards let
the input through to the code that reads it). Nothing answers 5xx, and every refusal
is the platform's JSON envelope. A route added later is walked the day it is added.
A stack of its own: the admin's writes change what they reach."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import Stack, stack_of_its_own
from tests.support import TOKENS

hostile_stack = stack_of_its_own(
    "emogo_hostile_walk",
    EMOGO_SIGN_IN_REQUESTS_PER_MINUTE="10000",
    EMOGO_ENROLMENT_ATTEMPTS_PER_ADDRESS="10000",
)
DOCUMENTS = ("ingest", "media", "admin", "gateway")
METHODS = ("get", "post", "put", "patch", "delete")
# Values as they reach a parameter (percent-encoded where they go in a URL).
HOSTILE_VALUES = {
    "NUL": "a\x00b",
    "5,000 digits": "9" * 5000,
    "Arabic-Indic digits": "١٢",
    "negative": "-1",
    "exponent": "1e309",
    "invalid UTF-8": "%ff%fe",
    "text-direction override": "exam\u202egnp",
    "Mongo operator": '{"$gt": ""}',
    "dot segments": "../../etc/passwd",
}
HOSTILE_BODIES = {
    "nested arrays": b"[" * 50_000 + b"]" * 50_000,
    "NUL in text": b'{"name": "a\\u0000b", "user_id": "a\\u0000b", "title": "a\\u0000b"}',
    "not an object": b'"just a string"',
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "huge number": b'{"intensity": 1e400, "latitude": 1e400, "count": 99999999999999999999999}',
}


def _in_url(value: str) -> str:
    # `invalid UTF-8` is sent as its percent escapes; everything else escaped whole.
    return value if value.startswith("%ff") else quote(value, safe="")


def _operations(client: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for document in DOCUMENTS:
        spec = client.get(f"/docs/{document}/openapi.json").json()
        for path, item in spec["paths"].items():
            for method in METHODS:
                if method in item:
                    found.append((method, path, item[method]))
    return found


def _filled(template: str, hostile: tuple[str, str] | None) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if hostile is not None and hostile[0] == name:
            return _in_url(hostile[1])
        return "000000000000000000000000"

    return re.sub(r"{(\w+)}", value, template)


def test_no_hostile_input_on_any_route_gives_a_5xx(hostile_stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    problems: list[str] = []
    sent = 0
    with httpx.Client(base_url=hostile_stack.gateway, headers=admin, timeout=60) as client:
        operations = _operations(client)

        def check(method: str, url: str, what: str, **extra: Any) -> None:
            nonlocal sent
            sent += 1
            answer = client.request(method.upper(), url, **extra)
            if answer.status_code >= 500:
                problems.append(f"{method.upper()} {url[:80]} {what}: {answer.status_code}")
            elif answer.status_code >= 400 and answer.content:
                try:
                    body = answer.json()
                except ValueError:
                    problems.append(f"{method.upper()} {url[:80]} {what}: not JSON")
                    return
                if not isinstance(body, dict) or body.get("code") != answer.status_code:
                    problems.append(f"{method.upper()} {url[:80]} {what}: not the envelope")

        for method, template, operation in operations:
            parameters = operation.get("parameters", [])
            for parameter in parameters:
                where, name = parameter["in"], parameter["name"]
                for label, value in HOSTILE_VALUES.items():
                    what = f"{where} {name}={label}"
                    if where == "path":
                        check(method, _filled(template, (name, value)), what)
                    elif where == "query":
                        url = f"{_filled(template, None)}?{name}={_in_url(value)}"
                        check(method, url, what)
                    elif where == "header" and name.lower() != "authorization":
                        encoded = value.encode("utf-8")
                        if b"\x00" in encoded:
                            continue  # no HTTP client sends a NUL in a header
                        check(method, _filled(template, None), what, headers={name: encoded})
            if method in ("post", "put", "patch"):
                for label, body in HOSTILE_BODIES.items():
                    check(
                        method,
                        _filled(template, None),
                        f"body {label}",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
    print(f"{len(operations)} operations, {sent} hostile requests")
    assert len(operations) > 100
    assert not problems, "\n".join(problems)
