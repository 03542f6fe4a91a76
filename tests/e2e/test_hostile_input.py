"""Malformed and hostile input, through the gateway to every service that takes it:
each answers a 4xx in the platform's envelope naming the problem, never a 500, and
nothing is stored."""

from __future__ import annotations

import base64
import socket
import uuid

import httpx
import pytest

from tests.conftest import Stack
from tests.support import TOKENS, log_entries, wait_until

# One JSON endpoint of each service, with the credential it needs (None: open).
JSON_ENDPOINTS = [
    ("/api/sentiments", "device"),
    ("/api/gps", "device"),
    ("/api/vlogs", "device"),
    ("/api/v1/register_user", None),
    ("/api/v1/authenticate_user", None),
    ("/api/v1/update_character_name", "admin"),
]

MALFORMED_JSON = {
    "nested arrays": (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
    "nested objects": (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "too deeply"),
    "invalid UTF-8": (b'{"user_id": "\xff\xfe", "emotion": "joy"}', "UTF-8"),
    "lone surrogate": (b'{"user_id": "P1", "emotion": "\\ud800", "intensity": 0.5}', "JSON"),
}


def _headers(role: str | None, content_type: str = "application/json") -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if role:
        headers["Authorization"] = f"Bearer {TOKENS[role]}"
    return headers


def _assert_envelope(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["code"] == status
    error = body["detail"]["error"]
    for word in words:
        assert word in error, error
    assert "Traceback" not in response.text
    return error


@pytest.mark.parametrize(("path", "role"), JSON_ENDPOINTS)
@pytest.mark.parametrize("case", list(MALFORMED_JSON))
def test_malformed_json_is_a_400_naming_the_problem(
    anonymous: httpx.Client, path: str, role: str | None, case: str
) -> None:
    body, word = MALFORMED_JSON[case]
    response = anonymous.post(path, content=body, headers=_headers(role))
    _assert_envelope(response, 400, word)


@pytest.mark.parametrize(("path", "role"), JSON_ENDPOINTS)
def test_control_characters_in_text_are_refused_by_field(
    anonymous: httpx.Client, viewer: httpx.Client, path: str, role: str | None
) -> None:
    participant = f"ctl-{uuid.uuid4().hex[:8]}"
    record = {
        "user_id": participant,
        "username": participant,
        "password": "long enough words",
        "character_id": "x",
        "character_name": "x",
        "emotion": "ha\u0000ppy\u0007",
        "intensity": 0.5,
        "latitude": 25.0,
        "longitude": 121.5,
        "video_url": "https://example.org/v.mp4",
        "title": "a\u001bb",
    }
    response = anonymous.post(path, json=record, headers=_headers(role))
    assert response.status_code == 422, response.text
    problems = {e["field"]: e["reason"] for e in response.json()["detail"]["errors"]}
    assert "U+0000" in problems["emotion"]
    assert "U+001B" in problems["title"]
    for kind in ("sentiments", "gps", "vlogs"):
        listed = viewer.get(f"/api/{kind}", params={"user_id": participant})
        assert listed.json() == []


def test_tab_and_newline_stay_allowed(device: httpx.Client) -> None:
    participant = f"ws-{uuid.uuid4().hex[:8]}"
    response = device.post(
        "/api/vlogs",
        json={
            "user_id": participant,
            "video_url": "https://example.org/v.mp4",
            "title": "day\t1",
            "description": "first line\nsecond line\r\nthird",
        },
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path", ["/api/sentiments", "/api/gps/batch", "/api/vlogs", "/api/v1/authenticate_user"]
)
def test_json_sent_as_another_type_is_a_415(anonymous: httpx.Client, path: str) -> None:
    role = None if path.startswith("/api/v1") else "device"
    body = b'{"user_id": "P1", "emotion": "joy", "intensity": 0.5}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = anonymous.post(path, content=body, headers=_headers(role, content_type))
        _assert_envelope(response, 415, "application/json")


MALFORMED_MULTIPART = {
    "wrong boundary": (
        "multipart/form-data; boundary=XYZ",
        b'--ABC\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nP1\r\n--ABC--\r\n',
        400,
    ),
    "missing boundary": (
        "multipart/form-data",
        b'--ABC\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nP1\r\n--ABC--\r\n',
        415,
    ),
    "quote and CRLF in a part header": (
        "multipart/form-data; boundary=ABC",
        b'--ABC\r\nContent-Disposition: form-data; name="us"er\r\n_id"\r\n\r\nP1\r\n--ABC--\r\n',
        400,
    ),
    "10 KB part header": (
        "multipart/form-data; boundary=ABC",
        b'--ABC\r\nContent-Disposition: form-data; name="user_id"; x="'
        + b"a" * 10_000
        + b'"\r\n\r\nP1\r\n--ABC--\r\n',
        400,
    ),
    "200 KB part header": (
        "multipart/form-data; boundary=ABC",
        b'--ABC\r\nContent-Disposition: form-data; name="user_id"; x="'
        + b"a" * 200_000
        + b'"\r\n\r\nP1\r\n--ABC--\r\n',
        400,
    ),
    "field that is not UTF-8": (
        "multipart/form-data; boundary=ABC",
        b'--ABC\r\nContent-Disposition: form-data; name="title"\r\n\r\n\xff\xfe\r\n--ABC--\r\n',
        422,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_MULTIPART))
def test_malformed_multipart_is_a_4xx(
    device: httpx.Client, viewer: httpx.Client, case: str
) -> None:
    content_type, body, status = MALFORMED_MULTIPART[case]
    before = viewer.get("/api/vlogs/count").json()
    response = device.post(
        "/api/vlogs/upload", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status, response.text[:300]
    assert response.json()["code"] == status
    assert viewer.get("/api/vlogs/count").json() == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/create_user",
        "/api/v1/delete_user",
        "/api/v1/update_user_config",
        "/api/v1/update_character_name",
        "/api/v1/duplicate_character",
        "/api/sentiments",
        "/api/gps/batch",
        "/api/vlogs",
    ],
)
def test_the_credential_is_checked_before_the_body(anonymous: httpx.Client, path: str) -> None:
    for body in (b"{}", b"not json", b"[" * 1000):
        response = anonymous.post(path, content=body, headers=_headers(None))
        _assert_envelope(response, 401)


def test_sign_in_does_not_say_which_user_names_exist(anonymous: httpx.Client) -> None:
    username = f"known-{uuid.uuid4().hex[:8]}"
    registered = anonymous.post(
        "/api/v1/register_user", json={"username": username, "password": "right horse words"}
    )
    assert registered.status_code == 200
    unknown = anonymous.post(
        "/api/v1/authenticate_user", json={"username": "x" + username, "password": "whatever1"}
    )
    wrong = anonymous.post(
        "/api/v1/authenticate_user", json={"username": username, "password": "wrong horse words"}
    )
    assert unknown.status_code == wrong.status_code == 400
    assert unknown.json() == wrong.json()
    assert wrong.json()["detail"]["error"] == "Incorrect username or password."


def _raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and b"}" in received:
                break
        return received


@pytest.mark.parametrize("process", ["gateway", "ingest", "media", "admin"])
def test_oversized_headers_are_refused_by_every_process(stack: Stack, process: str) -> None:
    url = stack.config.url(process)
    cases = {
        431: [
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % n for n in range(5_000))
            + b"\r\n",
        ],
        414: [b"GET /health?" + b"q" * (64 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
    }
    answered = 0
    for status, requests in cases.items():
        for request in requests:
            try:
                answer = _raw_request(url, request)
            except ConnectionResetError:
                # Refused and closed while the client was still sending: also fine,
                # provided the process is unharmed (checked below).
                continue
            answered += 1
            assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
            assert b'"code":%d' % status in answer
    assert answered >= 2
    assert httpx.get(f"{url}/ready", timeout=5).status_code == 200


@pytest.mark.parametrize("process", ["gateway", "ingest"])
def test_a_client_that_hangs_up_mid_body_is_logged_as_499_not_500(
    stack: Stack, process: str
) -> None:
    request_id = f"hangup-{process}-{uuid.uuid4().hex[:8]}"
    host, port = stack.config.url(process).removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /api/sentiments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKENS["device"].encode() + b"\r\n"
            b"X-Request-ID: " + request_id.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
            b'{"user_id": "P1", '
        )
    log = stack.config.log_dir / f"{process}.log"

    def logged() -> list[dict]:
        lines = [line for line in log_entries(log) if line.get("request_id") == request_id]
        return [line for line in lines if line.get("logger") == "emogo.access"]

    wait_until(lambda: bool(logged()), 15, "the access line of the abandoned request")
    assert [line["status"] for line in logged()] == [499]
    errors = [
        line
        for line in log_entries(log)
        if line.get("request_id") == request_id and line["level"] == "ERROR"
    ]
    assert errors == []


DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/api/sentiments/batch", "device"),
        ("/api/deletion-receipts/verify", "admin"),
        ("/api/studies", "admin"),
    ],
)
def test_deep_json_on_typed_routes_is_a_400(stack: Stack, path: str, role: str) -> None:
    """Routes whose body Litestar or a batch decodes by type once answered 500
    (RecursionError) to 50,000 nested arrays."""
    with stack.client() as client:
        answer = client.post(path, content=DEEP, headers=_headers(role))
    assert answer.status_code == 400, answer.text[:300]
    assert "too deeply" in answer.json()["detail"]["error"]


def test_numbers_in_headers_and_parameters_are_ascii_and_bounded(stack: Stack) -> None:
    tus = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {TOKENS['device']}"}
    with stack.client() as client:
        created = client.post("/api/vlogs/tus", headers={**tus, "Upload-Length": "9" * 5000})
        assert created.status_code == 400, created.text[:300]
        assert "Upload-Length" in created.json()["detail"]["error"]
        arabic = client.post("/api/vlogs/tus", headers={**tus, "Upload-Length": "١٢".encode()})
        assert arabic.status_code == 400, arabic.text[:300]
        metadata = "user_id " + base64.b64encode(b"hostile-numbers").decode()
        upload = client.post(
            "/api/vlogs/tus",
            headers={**tus, "Upload-Length": "10", "Upload-Metadata": metadata},
        )
        assert upload.status_code == 201, upload.text
        location = upload.headers["location"]
        offset = client.patch(
            location,
            content=b"0123456789",
            headers={
                **tus,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "1" * 5000,
            },
        )
        assert offset.status_code == 400, offset.text[:300]
        checksum = client.patch(
            location,
            content=b"0123456789",
            headers={
                **tus,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
                "Upload-Checksum": b"sha1 \xb2",
            },
        )
        assert checksum.status_code == 400, checksum.text[:300]
        assert "Upload-Checksum" in checksum.json()["detail"]["error"]
        client.delete(location, headers=tus)
        since = client.get("/api/sentiments", params={"since": "١٢"}, headers=_headers("viewer"))
        assert since.status_code == 422, since.text[:300]
        assert since.json()["detail"]["errors"][0]["field"] == "since"


def test_text_direction_overrides_are_refused_by_field(admin: httpx.Client) -> None:
    """A study named "exam\u202egnp.exe" reads as "exampexe.png" on a TA's screen."""
    study_id = f"bidi-{uuid.uuid4().hex[:8]}"
    answer = admin.post("/api/studies", json={"study_id": study_id, "name": "exam\u202egnp.exe"})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]["errors"]
    assert problem["field"] == "name"
    assert "U+202E" in problem["reason"]
    assert admin.get(f"/api/studies/{study_id}").status_code == 404
    # Right-to-left text itself is welcome.
    written = admin.post("/api/studies", json={"study_id": study_id, "name": "שלום \u200f עולם"})
    assert written.status_code == 201, written.text
