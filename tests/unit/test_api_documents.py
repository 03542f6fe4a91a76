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


@pytest.mark.parametrize("service", ["ingest", "media", "admin", "gateway"])
def test_every_example_is_one_the_code_declares(service: str, tmp_path: Path) -> None:
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    # Building the app opens nothing: the database is only reached in its lifespan.
    settings = settings_module.load_settings(
        service_environ("mongodb://127.0.0.1:9", tmp_path, "x")
    )
    document = json.loads(encode_json(app_module.create_app(settings).openapi_schema.to_schema()))
    made_up = [
        example
        for example in examples_in(document)
        if json.dumps(example) not in SOURCES and repr(example) not in SOURCES
    ]
    assert made_up == []
