"""The OpenAPI documents show real examples or none: every example value in them is one
the code declares (Litestar would otherwise make up random strings and numbers)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from litestar.serialization import encode_json

from tests.support import service_environ

SOURCES = "\n".join(path.read_text() for path in Path("services").rglob("*.py"))


def examples_in(value: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "examples" and isinstance(inner, list):
                found += inner
            elif key == "example":
                found.append(inner)
            else:
                found += examples_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found += examples_in(inner)
    return found


def document_of(service: str, tmp_path: Path) -> dict[str, Any]:
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    # Building the app opens nothing: the database is only reached in its lifespan.
    settings = settings_module.load_settings(
        service_environ("mongodb://127.0.0.1:9", tmp_path, "x")
    )
    document: dict[str, Any] = json.loads(
        encode_json(app_module.create_app(settings).openapi_schema.to_schema())
    )
    return document


@pytest.mark.parametrize("service", ["ingest", "media", "admin", "gateway"])
def test_every_example_is_one_the_code_declares(service: str, tmp_path: Path) -> None:
    document = document_of(service, tmp_path)
    made_up = [
        example
        for example in examples_in(document)
        if json.dumps(example) not in SOURCES and repr(example) not in SOURCES
    ]
    assert made_up == []


def test_a_body_that_may_be_left_out_is_documented_so(tmp_path: Path) -> None:
    """Withdrawing takes an optional body; signing in requires one (its type read and
    documented by `@json_body`, the rate limit counted first)."""
    paths = document_of("admin", tmp_path)["paths"]
    withdraw = paths["/api/studies/{study_id}/participants/{user_id}/withdraw"]["post"]
    assert withdraw["requestBody"]["required"] is False
    assert "delete_data" in str(withdraw["requestBody"]["content"])
    for path in ("/api/v1/authenticate_user", "/api/v1/register_user"):
        body = paths[path]["post"]["requestBody"]
        assert body["required"] is True
        assert "password" in str(body["content"]), path
