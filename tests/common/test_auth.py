"""Roles: who may read, who may write, and how a browser signs in."""

from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.common.research.auth import principal_from_header
from services.common.runtime.settings import Credentials
from tests.common.apps import make_app
from tests.support import TOKENS, basic, bearer

CREDENTIALS = Credentials(**TOKENS)


@pytest.mark.parametrize("role", ["admin", "viewer", "device"])
def test_bearer_and_basic_resolve_each_role(role: str) -> None:
    assert principal_from_header(f"Bearer {TOKENS[role]}", CREDENTIALS).role == role
    header = basic(role, TOKENS[role])["Authorization"]
    assert principal_from_header(header, CREDENTIALS).role == role


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-000000",
        f"Token {TOKENS['admin']}",
        basic("viewer", TOKENS["admin"])["Authorization"],  # user name must match the token's role
        basic("admin", "")["Authorization"],
        "Basic !!!not-base64",
        f"Bearer {TOKENS['admin']}x",
    ],
)
def test_anything_else_proves_nothing(header: str | None) -> None:
    assert principal_from_header(header, CREDENTIALS) is None


def test_missing_credentials_get_401_with_a_browser_challenge(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        response = client.get("/readings/a")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        assert response.json()["code"] == 401
        wrong = client.get("/readings/a", headers={"Authorization": "Bearer nope-nope-nope"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"]["error"] == "Invalid credentials"


def test_roles_are_enforced(tmp_path: Path) -> None:
    reading = {"user_id": "p1", "intensity": 0.4}
    with TestClient(make_app(tmp_path)) as client:
        # Readers read, writers write, and neither does the other's job.
        assert client.get("/readings/x", headers=bearer("viewer")).status_code == 404
        assert client.get("/readings/x", headers=bearer("admin")).status_code == 404
        assert client.get("/readings/x", headers=bearer("device")).status_code == 403
        assert client.post("/readings", json=reading, headers=bearer("device")).status_code == 201
        assert client.post("/readings", json=reading, headers=bearer("admin")).status_code == 201
        forbidden = client.post("/readings", json=reading, headers=bearer("viewer"))
        assert forbidden.status_code == 403
        assert "viewer" in forbidden.json()["detail"]["error"]
        assert client.get("/admin-only", headers=bearer("viewer")).status_code == 403
        assert client.get("/admin-only", headers=basic("admin", TOKENS["admin"])).status_code == 200
