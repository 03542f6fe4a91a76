"""JSON-lines logs: request ids on every line, secrets never written."""

import json
import logging
from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.common.runtime.logs import Redactor, configure_logging, new_request_id
from tests.common.apps import make_app
from tests.support import TOKENS, bearer


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_redactor_removes_configured_and_secret_shaped_values() -> None:
    redact = Redactor(["s3cr3t-token-value"])
    text = redact(
        "got s3cr3t-token-value; Authorization: Bearer abc.def-ghi; Basic dmlld2VyOnh5eg==; "
        '{"openai_api_key": "sk-live-123", "password": "hunter2"} '
        "mongodb://app:dbpass@db:27017/emogo"
    )
    for secret in (
        "s3cr3t-token-value",
        "abc.def-ghi",
        "dmlld2VyOnh5eg==",
        "sk-live-123",
        "hunter2",
        "dbpass",
    ):
        assert secret not in text
    assert "mongodb://app:[REDACTED]@db:27017/emogo" in text


def test_each_secret_shape_is_redacted_alone_in_any_letter_case() -> None:
    """Lines are checked for secret-telling words before the patterns run; a line with
    one shape only, in capitals or mixed case, must still be caught."""
    redact = Redactor()
    for line, secret in (
        ("AUTHORIZATION: BEARER abc.def-ghi", "abc.def-ghi"),
        ("authorization: basic dmlld2VyOnh5eg==", "dmlld2VyOnh5eg=="),
        ('{"OpenAI_API_KEY": "sk-live-123"}', "sk-live-123"),
        ("PASSWORD=hunter2", "hunter2"),
        ("Refresh_Token: r-456", "r-456"),
        ("client_SECRET=c-789", "c-789"),
        ("mongodb://app:dbpass@db:27017/emogo", "dbpass"),
    ):
        assert secret not in redact(line), line
    plain = "POST /api/sentiments 201 in 3.2 ms"
    assert redact(plain) == plain


def test_request_ids_are_kept_when_well_formed() -> None:
    assert new_request_id("abc-123") == "abc-123"
    generated = new_request_id("bad id with spaces")
    assert generated != "bad id with spaces"
    assert len(generated) == 32
    assert new_request_id("x" * 200) != "x" * 200


def test_every_request_logs_a_line_with_its_request_id(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        response = client.get(
            "/readings/r1",
            headers={**bearer("viewer"), "X-Request-ID": "trace-42"},
        )
        assert response.headers["x-request-id"] == "trace-42"
        generated = client.get("/readings/r2?api_key=leaky", headers=bearer("viewer"))
        generated_id = generated.headers["x-request-id"]
    lines = read_lines(tmp_path / "ingest.log")
    access = [line for line in lines if line["logger"] == "emogo.access"]
    first = next(line for line in access if line["request_id"] == "trace-42")
    assert first["path"] == "/readings/r1"
    assert first["status"] == 404
    assert first["method"] == "GET"
    assert first["service"] == "ingest"
    assert "duration_ms" in first
    assert "time" in first
    assert any(line["request_id"] == generated_id for line in access)
    text = (tmp_path / "ingest.log").read_text()
    # Query strings are not logged at all; tokens never.
    assert "leaky" not in text
    assert TOKENS["viewer"] not in text


def test_the_console_can_hold_fewer_lines_than_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under the launcher stdout lands in a console file beside the log: there it keeps
    only warnings and errors, and the log file still has every line."""
    path = configure_logging("ingest", tmp_path, "INFO", console_level="WARNING")
    try:
        logging.getLogger("emogo.test").info("an ordinary request")
        logging.getLogger("emogo.test").warning("something to look at")
        for handler in logging.getLogger().handlers:
            handler.flush()
        console = capsys.readouterr().out
        assert "something to look at" in console
        assert "an ordinary request" not in console
        messages = [line["message"] for line in read_lines(path)]
        assert "an ordinary request" in messages
        assert "something to look at" in messages
    finally:
        configure_logging("ingest", tmp_path, "INFO")
