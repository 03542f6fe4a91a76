"""The companion app's current front end, replayed through the gateway in the order its
screens call the API (../shared/reference/admin-api.md, "The companion app's current
front end"), from its own origin. The seed's release is replayed in test_users.py."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.admin.test_cors import FRONT_END, cors_stack, preflight  # noqa: F401
from tests.conftest import Stack

ORIGIN = {"Origin": FRONT_END}


def _call(client: httpx.Client, path: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {**ORIGIN, **({"Authorization": f"Bearer {token}"} if token else {})}
    answer = client.post(f"/api/v1/{path}", json=body, headers=headers)
    assert answer.headers.get("access-control-allow-origin") == FRONT_END
    return answer


def _account(username: str, password: str, language: str = "en", **more: str) -> dict:
    return {"username": username, "password": password, "language": language, **more}


def _get(client: httpx.Client, path: str, token: str) -> dict:
    headers = {**ORIGIN, "Authorization": f"Bearer {token}"}
    return client.get(f"/api/v1/{path}", headers=headers).json()


def test_the_current_release_from_sign_up_to_account_deletion(cors_stack: Stack) -> None:  # noqa: F811
    username = f"cur-{uuid.uuid4().hex[:8]}"
    password, new_password = "first long password", "second long password"
    with cors_stack.client() as client:
        assert preflight(client, "/api/v1/authenticate_user", FRONT_END).status_code == 204

        # Sign-in first; on failure, register, then sign in (no create_user call).
        unknown = _call(
            client,
            "authenticate_user",
            _account(username, password, "en"),
        )
        assert unknown.status_code == 200
        assert unknown.json()["auth_code"] == 500
        assert unknown.json()["user_id"] == ""
        assert unknown.json()["auth_msg"] == "Incorrect username or password."
        registered = _call(client, "register_user", _account(username, password, "en")).json()
        assert registered["auth_code"] == 200
        assert registered["confirmation_required"] is False
        user_id = registered["user_id"]
        taken = _call(client, "register_user", _account(username, password, "zh")).json()
        assert (taken["auth_code"], taken["user_id"]) == (500, "")
        assert taken["auth_msg"] == "此帳號名稱已被使用。"
        signed_in = _call(
            client,
            "authenticate_user",
            _account(username, password, "en"),
        ).json()
        assert (signed_in["auth_code"], signed_in["user_id"]) == (200, user_id)
        token = signed_in["token"]

        # The first list_characters finds the defaults, made at sign-in, once only.
        auth = {**ORIGIN, "Authorization": f"Bearer {token}"}
        listed = client.get(f"/api/v1/list_characters/{user_id}", headers=auth).json()
        assert len(listed["character_id_list"]) >= 1
        again = _call(
            client,
            "authenticate_user",
            _account(username, password, "en"),
        ).json()
        assert again["auth_code"] == 200
        relisted = client.get(f"/api/v1/list_characters/{user_id}", headers=auth).json()
        assert relisted == listed

        # After sign-in: the browser's time zone, then the keys a character still needs.
        timezone = _call(
            client, "update_user_config", {"user_id": user_id, "timezone": "Asia/Taipei"}, token
        )
        assert timezone.status_code == 200
        character = listed["character_id_list"][0]
        missing = client.get(
            f"/api/v1/get_missing_secrets/{user_id}/{character}", headers=auth
        ).json()
        assert set(missing) == {"llm_requirements", "tts_requirements", "asr_requirements"}
        assert "openai_api_key" in missing["llm_requirements"]
        key = {"user_id": user_id, "openai_api_key": "sk-test-0123456789abcdef"}
        assert _call(client, "update_user_config", key, token).status_code == 200
        after = client.get(
            f"/api/v1/get_missing_secrets/{user_id}/{character}", headers=auth
        ).json()
        assert "openai_api_key" not in after["llm_requirements"]

        # Password change: the outcome in the body; the old password no longer works.
        wrong = _call(
            client,
            "update_user_password",
            {
                "username": username,
                "password": "not the password",
                "new_password": new_password,
                "language": "en",
            },
        ).json()
        assert wrong == {
            "auth_code": 500,
            "auth_msg": "Incorrect username or password.",
            "confirmation_required": False,
        }
        changed = _call(
            client,
            "update_user_password",
            {
                "username": username,
                "password": password,
                "new_password": new_password,
                "language": "en",
            },
        ).json()
        assert (changed["auth_code"], changed["confirmation_required"]) == (200, False)
        token = _call(
            client,
            "authenticate_user",
            _account(username, new_password, "en"),
        ).json()["token"]

        # Account deletion needs the account's own password.
        refused = _call(
            client,
            "delete_user",
            _account(username, password, user_id=user_id),
            token,
        ).json()
        assert (refused["auth_code"], refused["user_id"]) == (500, "")
        deleted = _call(
            client,
            "delete_user",
            _account(username, new_password, user_id=user_id),
            token,
        ).json()
        assert deleted == {"user_id": user_id, "auth_code": 200, "auth_msg": "Account deleted."}
        gone = _call(
            client,
            "authenticate_user",
            _account(username, new_password, "en"),
        ).json()
        assert gone["auth_code"] == 500


def test_both_releases_show_one_password_rule(anonymous: httpx.Client) -> None:
    for language in (None, "en"):
        body = {"username": f"short-{uuid.uuid4().hex[:6]}", "password": "short"}
        if language:
            body["language"] = language
        answer = anonymous.post("/api/v1/register_user", json=body)
        assert answer.status_code == 422
        assert answer.json()["detail"]["error"] == "password: must be at least 8 characters"


@pytest.mark.parametrize("language", ["fr", "", "EN"])
def test_other_languages_are_refused(anonymous: httpx.Client, language: str) -> None:
    answer = anonymous.post(
        "/api/v1/authenticate_user",
        json={"username": "someone", "password": "whatever words", "language": language},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"]["errors"][0]["field"] == "language"


def test_the_orchestrator_reads_motion_keywords(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/api/v1/motion_keywords")
    assert answer.status_code == 200
    keywords = answer.json()["motion_keywords"]
    assert keywords
    assert all(isinstance(word, str) and word for word in keywords)
