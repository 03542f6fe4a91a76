"""CORS: the companion app's front end runs on its own origin; a browser lets it call
the admin API through the gateway only when the preflight and every answer say so."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from services.common.runtime.settings import ConfigError, Environment, cors_origins
from tests.conftest import Stack, stack_of_its_own
from tests.support import TOKENS

# Processes of its own (see pyproject.toml markers).
pytestmark = pytest.mark.slow


FRONT_END = "https://app.example.org"
DEV_SERVER = "http://localhost:5173"

cors_stack = stack_of_its_own(
    "emogo_cors",
    EMOGO_CORS_ORIGINS=f"{FRONT_END}, {DEV_SERVER}",
    EMOGO_SIGN_IN_REQUESTS_PER_MINUTE="10000",
)


def preflight(client: httpx.Client, path: str, origin: str, method: str = "POST") -> httpx.Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/authenticate_user", "POST"),
        ("/api/v1/register_user", "POST"),
        ("/api/v1/update_character_scene", "POST"),
        ("/api/v1/list_characters/some-user", "GET"),
        ("/api/sentiments", "POST"),
        ("/api/vlogs/abc", "PATCH"),
    ],
)
def test_preflights_from_a_listed_origin_are_answered(
    cors_stack: Stack, path: str, method: str
) -> None:
    with cors_stack.client() as client:
        answer = preflight(client, path, FRONT_END, method)
    assert answer.status_code == 204, answer.text
    assert answer.headers["access-control-allow-origin"] == FRONT_END
    assert method in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    # Bearer tokens, not cookies: no credentials mode.
    assert "access-control-allow-credentials" not in answer.headers


def test_the_front_end_signs_up_and_reads_its_characters_cross_origin(cors_stack: Stack) -> None:
    credentials = {"username": f"cors-{uuid.uuid4().hex[:8]}", "password": "long enough words"}
    headers = {"Origin": DEV_SERVER}
    with cors_stack.client() as client:
        registered = client.post("/api/v1/register_user", json=credentials, headers=headers)
        assert registered.status_code == 200
        assert registered.headers["access-control-allow-origin"] == DEV_SERVER
        signed_in = client.post("/api/v1/authenticate_user", json=credentials, headers=headers)
        token = signed_in.json()["token"]
        user_id = signed_in.json()["user_id"]
        auth = {**headers, "Authorization": f"Bearer {token}"}
        assert (
            client.post("/api/v1/create_user", json={"user_id": user_id}, headers=auth).status_code
            == 200
        )
        listed = client.get(f"/api/v1/list_characters/{user_id}", headers=auth)
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == DEV_SERVER
    # What the front end may read of an answer.
    assert "x-request-id" in listed.headers["access-control-expose-headers"].lower()
    # Errors carry the header too, so the page can show detail.error.
    with cors_stack.client() as client:
        refused = client.get(f"/api/v1/list_characters/{user_id}", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == DEV_SERVER


def test_other_origins_get_no_permission(cors_stack: Stack) -> None:
    with cors_stack.client() as client:
        answer = preflight(client, "/api/v1/authenticate_user", "https://evil.example.com")
        plain = client.get(
            "/api/v1/whoami",
            headers={"Origin": "https://evil.example.com", **_bearer("viewer")},
        )
    assert answer.status_code >= 400
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in plain.headers


def test_without_listed_origins_nothing_is_allowed_cross_origin(anonymous: httpx.Client) -> None:
    answer = preflight(anonymous, "/api/v1/authenticate_user", FRONT_END)
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("value", "open_mode", "problem"),
    [
        ("*", "false", "open mode"),
        ("app.example.org", "false", "not an origin"),
        ("https://app.example.org/path", "false", "not an origin"),
    ],
)
def test_origins_are_checked_at_start(value: str, open_mode: str, problem: str) -> None:
    env = Environment({"EMOGO_CORS_ORIGINS": value, "EMOGO_ADMIN_OPEN_USER_ENDPOINTS": open_mode})
    with pytest.raises(ConfigError) as raised:
        cors_origins(env)
    assert raised.value.variable == "EMOGO_CORS_ORIGINS"
    assert problem in raised.value.reason


def test_any_origin_only_in_the_open_mode() -> None:
    env = Environment({"EMOGO_CORS_ORIGINS": "*", "EMOGO_ADMIN_OPEN_USER_ENDPOINTS": "true"})
    assert cors_origins(env) == ("*",)


def _bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def test_the_gateways_own_answers_carry_the_header_too(cors_stack: Stack) -> None:
    """Refusals made by the gateway itself (not a service) reach the page as well."""
    with cors_stack.client() as client:

        def chunks():  # unknown length, no credential: refused at the gateway
            yield b"x" * 1024

        refused = client.post(
            "/api/vlogs/upload/raw",
            content=chunks(),
            headers={"Origin": FRONT_END, "Content-Type": "video/mp4"},
        )
        health = client.get("/health", headers={"Origin": FRONT_END})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == FRONT_END
    assert health.headers["access-control-allow-origin"] == FRONT_END


def test_a_browsers_resumable_upload_may_send_and_read_the_tus_headers(cors_stack: Stack) -> None:
    """tus-js-client in a page of a listed origin: the preflight of its PATCH allows the
    tus request headers, and the answers let the page read the offset and location."""
    with cors_stack.client() as client:
        answer = client.options(
            "/api/vlogs/tus/0123456789abcdef0123456789abcdef",
            headers={
                "Origin": FRONT_END,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": (
                    "authorization,content-type,tus-resumable,upload-offset,upload-checksum"
                ),
            },
        )
        assert answer.status_code in (200, 204)
        assert answer.headers["access-control-allow-origin"] == FRONT_END
        allowed = answer.headers["access-control-allow-headers"].lower()
        for header in ("tus-resumable", "upload-offset", "upload-checksum", "upload-metadata"):
            assert header in allowed
        created = client.post(
            "/api/vlogs/tus",
            headers={
                "Origin": FRONT_END,
                "Authorization": f"Bearer {TOKENS['device']}",
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "100",
                # Whose video: checked when the upload is created.
                "Upload-Metadata": "user_id " + base64.b64encode(b"cors-phone").decode(),
            },
        )
        assert created.status_code == 201, created.text
        exposed = created.headers["access-control-expose-headers"].lower()
        for header in ("location", "upload-offset", "upload-expires", "tus-resumable"):
            assert header in exposed
