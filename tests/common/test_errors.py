"""Every error leaves in the one envelope, with the right status and no internals."""

from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.common.web.errors import explain
from tests.common.apps import make_app
from tests.support import TOKENS, bearer


def test_not_found_and_conflict_use_the_envelope(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        response = client.get("/readings/abc", headers=bearer("viewer"))
        assert response.status_code == 404
        assert response.json() == {
            "message": "HTTP Error 404",
            "code": 404,
            "detail": {"error": "Reading abc not found"},
        }
        assert client.get("/readings/taken", headers=bearer("viewer")).status_code == 409


def test_validation_errors_name_each_field(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        response = client.post("/readings", json={"intensity": "high"}, headers=bearer("device"))
        assert response.status_code == 422
        body = response.json()
        assert body["message"] == "Validation Error"
        assert body["code"] == 422
        fields = {error["field"] for error in body["detail"]["errors"]}
        assert fields & {"intensity", "user_id"}, body
        assert body["detail"]["error"]

        response = client.post(
            "/readings", json={"user_id": "p1", "intensity": 3}, headers=bearer("device")
        )
        assert response.status_code == 422
        assert response.json()["detail"]["errors"] == [
            {"field": "intensity", "reason": "must be between 0 and 1"}
        ]


def test_malformed_json_is_a_client_error(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        response = client.post(
            "/readings",
            content=b"{not json",
            headers={**bearer("device"), "Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500
        assert response.json()["code"] == response.status_code


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, max_body=1024)) as client:
        response = client.post(
            "/readings",
            json={"user_id": "x" * 4096, "intensity": 0.5},
            headers=bearer("device"),
        )
        assert response.status_code == 413
        assert response.json()["code"] == 413


def test_unknown_route_and_method(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        missing = client.get("/nowhere")
        assert missing.status_code == 404
        assert missing.json()["detail"]["error"]
        assert missing.headers["x-request-id"]
        wrong = client.delete("/admin-only", headers=bearer("admin"))
        assert wrong.status_code == 405
        assert wrong.json()["code"] == 405


def test_unexpected_error_is_500_without_internals(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path), raise_server_exceptions=False) as client:
        response = client.get("/boom", headers=bearer("admin"))
        assert response.status_code == 500
        assert response.json() == {
            "message": "HTTP Error 500",
            "code": 500,
            "detail": {"error": "Internal server error"},
        }
        assert "Traceback" not in response.text
        assert "exploded" not in response.text
    # The traceback is in the log, with the secret redacted.
    log = (tmp_path / "ingest.log").read_text()
    assert "exploded while holding" in log
    assert TOKENS["admin"] not in log


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("Expected `int`, got `str`", "must be a whole number, not text"),
        ("Expected `int`, got `float`", "must be a whole number, not a decimal number"),
        ("Expected `float | null`, got `str`", "must be a number or null, not text"),
        ("Expected `object`, got `array`", "must be an object, not a list"),
        ("Expected `bool`, got `int`", "must be true or false, not a whole number"),
        ("Expected `float` <= 1.0", "must be at most 1.0"),
        ("Expected `int` >= 1", "must be at least 1"),
        ("Expected `int` > 0", "must be more than 0"),
        ("Expected `str` of length <= 200", "must be at most 200 characters"),
        # What has no words is left as msgspec says it.
        ("Expected `datetime`, got `str`", "Expected `datetime`, got `str`"),
        ("Invalid enum value 'x'", "Invalid enum value 'x'"),
    ],
)
def test_msgspec_reasons_in_words(reason: str, words: str) -> None:
    assert explain(reason) == words
