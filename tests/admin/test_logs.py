"""Logs for the admin: the tail read from the end of a large file, HTML or JSON,
secrets redacted, downloads under both spellings."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import httpx
import pytest

from services.common.runtime.logs import tail
from tests.conftest import Stack
from tests.support import TOKENS


def test_tail_reads_from_the_end_of_a_large_file(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = b'{"level": "INFO", "message": "' + b"x" * 200 + b'"}\n'
    with log.open("wb") as out:
        for _ in range(300):  # about 70 MB
            out.write(line * 1000)
        out.write(b"".join(b'{"n": %d}\n' % n for n in range(5)))
    tracemalloc.start()
    last = tail(log, 3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert last == ['{"n": 2}', '{"n": 3}', '{"n": 4}']
    assert peak < 2 * 1024 * 1024  # a few blocks, never the file
    assert len(tail(log, 2500)) == 2500
    assert tail(log, 0) == []
    short = tmp_path / "short.log"
    short.write_text("one\ntwo\n")
    assert tail(short, 10) == ["one", "two"]
    # A line still being written (another worker's, read part-way) is not shown yet.
    with short.open("a") as out:
        out.write('{"level": "INFO", "mess')
    assert tail(short, 10) == ["one", "two"]
    assert tail(short, 1) == ["two"]


def test_tail_log_for_browsers_and_scripts(stack: Stack) -> None:
    log = stack.config.log_dir / "ingest.log"
    # A line that slipped a secret past the writer is still redacted when read.
    with log.open("a") as out:
        out.write(f'{{"message": "oops {TOKENS["device"]} <b>"}}\n')
    with stack.client("admin") as admin:
        page = admin.get(
            "/tail_log/1", params={"service": "ingest"}, headers={"Accept": "text/html"}
        )
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "&lt;b&gt;" in page.text
        assert TOKENS["device"] not in page.text
        data = admin.get("/tail_log/1", params={"service": "ingest", "format": "json"}).json()
        assert data["service"] == "ingest"
        assert data["lines"] == ['{"message": "oops [REDACTED] <b>"}']
        many = admin.get("/tail_log/5", headers={"Accept": "application/json"}).json()
        assert len(many["lines"]) == 5
        for bad in ("/tail_log/0", "/tail_log/10001", "/tail_log/-1"):
            assert admin.get(bad).status_code in (404, 422), bad
        assert admin.get("/tail_log/5", params={"service": "etc/passwd"}).status_code == 422


@pytest.mark.parametrize("path", ["/dowload_log_file", "/download_log_file"])
def test_log_download(stack: Stack, path: str) -> None:
    with (
        stack.client("admin") as admin,
        admin.stream("GET", path, params={"service": "media"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-disposition"] == 'attachment; filename="media.log"'
        body = b"".join(response.iter_bytes())
    assert body.count(b"\n") >= 1
    assert TOKENS["admin"].encode() not in body
    with stack.client("viewer") as viewer:
        assert viewer.get(path).status_code == 403


def test_sign_in_is_rate_limited_per_address(
    tmp_path: Path, mongodb_uri: str, db_name: str
) -> None:
    from tests.admin.test_bootstrap import start_admin

    process, url = start_admin(
        mongodb_uri, db_name, tmp_path, EMOGO_SIGN_IN_REQUESTS_PER_MINUTE="2"
    )
    try:
        # A body refused as malformed counts too: the limit comes before the body.
        attempts = [
            {"username": 5},
            {"username": "nobody", "password": "whatever"},
            {"username": "nobody", "password": "whatever"},
        ]
        statuses = [
            httpx.post(f"{url}/api/v1/authenticate_user", json=attempt).status_code
            for attempt in attempts
        ]
        assert statuses == [422, 400, 429]
    finally:
        process.terminate()
        process.wait(15)
