"""The companion app's users through the gateway: the front end's sign-in flow, the
original's shapes, tokens that reach only their own user, passwords, locks."""

from __future__ import annotations

import re
import uuid

import httpx
from pymongo import MongoClient

from tests.conftest import Stack

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}$")
DEFAULT_AVATARS = {
    "KQ-default",
    "FNN-default",
    "HT-default",
    "Ani-default",
    "KL-default",
    "NXD-default",
}


def sign_up(client: httpx.Client, username: str | None = None) -> tuple[str, dict[str, str]]:
    """The front end's flow for a new user; returns the user id and its token header."""
    username = username or f"user-{uuid.uuid4().hex[:8]}"
    credentials = {"username": username, "password": "correct horse battery"}
    first = client.post("/api/v1/authenticate_user", json=credentials)
    assert first.status_code == 400
    assert first.json()["detail"]["error"] == "Incorrect username or password."
    registered = client.post("/api/v1/register_user", json=credentials)
    assert registered.status_code == 200
    user_id = registered.json()["user_id"]
    assert uuid.UUID(user_id).version == 4
    signed_in = client.post("/api/v1/authenticate_user", json=credentials)
    assert signed_in.status_code == 200
    assert signed_in.json()["user_id"] == user_id
    headers = {"Authorization": f"Bearer {signed_in.json()['token']}"}
    created = client.post("/api/v1/create_user", json={"user_id": user_id}, headers=headers)
    assert created.status_code == 200
    assert created.content == b""
    return user_id, headers


def test_the_front_ends_sign_in_flow(anonymous: httpx.Client) -> None:
    user_id, headers = sign_up(anonymous)
    listed = anonymous.get(f"/api/v1/list_characters/{user_id}", headers=headers)
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"character_id_list", "character_name_list"}
    assert len(body["character_id_list"]) == 6
    assert len(set(body["character_id_list"])) == 6
    config = anonymous.get(
        f"/api/v1/get_character_config/{user_id}/{body['character_id_list'][0]}", headers=headers
    ).json()
    assert config["user_id"] == user_id
    assert config["read_only"] is True
    assert CREATED_AT.match(config["create_datatime"])
    expected_defaults = {
        "voice_speed": 1.0,
        "acquaintance_threshold": 5,
        "friend_threshold": 10,
        "situationship_threshold": 15,
        "lover_threshold": 20,
        "neutral_threshold": 50,
        "happiness_threshold": 20,
        "shyness_threshold": 20,
        "memory_model_override": "",
    }
    assert {k: config[k] for k in expected_defaults} == expected_defaults
    avatars = set()
    for character_id in body["character_id_list"]:
        one = anonymous.get(
            f"/api/v1/get_character_config/{user_id}/{character_id}", headers=headers
        ).json()
        avatars.add(one["avatar"])
    assert avatars == DEFAULT_AVATARS


def test_a_token_reaches_only_its_own_user(stack: Stack, anonymous: httpx.Client) -> None:
    alice, alice_headers = sign_up(anonymous)
    bob, _ = sign_up(anonymous)
    bob_character = None
    with stack.client("admin") as admin:
        bob_character = admin.get(f"/api/v1/list_characters/{bob}").json()["character_id_list"][0]
    for method, path, body in [
        ("GET", f"/api/v1/list_characters/{bob}", None),
        ("GET", f"/api/v1/get_character_config/{bob}/{bob_character}", None),
        ("GET", f"/api/v1/get_available_llm/{bob}", None),
        ("GET", f"/api/v1/get_user_config/{bob}", None),
        ("POST", "/api/v1/update_user_config", {"user_id": bob, "openai_api_key": "x" * 20}),
        ("POST", "/api/v1/duplicate_character", {"user_id": bob, "character_id": bob_character}),
        ("POST", "/api/v1/delete_user", {"user_id": bob}),
    ]:
        response = anonymous.request(method, path, json=body, headers=alice_headers)
        assert response.status_code == 404, (path, response.text)
        assert anonymous.request(method, path, json=body).status_code == 401, path
    # Bob is untouched, and Alice still reaches her own data.
    with stack.client("admin") as admin:
        assert admin.get(f"/api/v1/get_available_llm/{bob}").json() == {"options": []}
    assert (
        anonymous.get(f"/api/v1/list_characters/{alice}", headers=alice_headers).status_code == 200
    )


def test_roles_and_admin_only_endpoints(stack: Stack, anonymous: httpx.Client) -> None:
    user_id, headers = sign_up(anonymous)
    with (
        stack.client("viewer") as viewer,
        stack.client("device") as device,
        stack.client("admin") as admin,
    ):
        for path in ("/api/v1/list_users", "/api/v1/list_user_credential_id", "/tail_log/5"):
            assert anonymous.get(path).status_code == 401, path
            assert anonymous.get(path, headers=headers).status_code == 403, path
            assert viewer.get(path).status_code == 403, path
            assert admin.get(path).status_code == 200, path
        assert viewer.get(f"/api/v1/list_characters/{user_id}").status_code == 403
        assert device.get(f"/api/v1/list_characters/{user_id}").status_code == 403
        users = admin.get("/api/v1/list_users").json()
        assert user_id in users["user_id_list"]
        position = users["user_id_list"].index(user_id)
        assert users["user_name_list"][position].startswith("user-")
        for path in ("/api/v1/list_user_credential_id", "/api/v1/list_user_config_id"):
            ids = admin.get(path).json()
            assert user_id in ids["user_id_list"]
            assert ids["user_name_list"] is None
        assert admin.get("/api/v1/whoami").json() == {
            "role": "admin",
            "user_id": None,
            "study_ids": None,
            "token_id": None,
            "name": None,
        }
    assert anonymous.get("/api/v1/whoami", headers=headers).json() == {
        "role": "user",
        "user_id": user_id,
        "study_ids": None,
        "token_id": None,
        "name": None,
    }


def test_registration_and_creation_conflicts(stack: Stack, anonymous: httpx.Client) -> None:
    user_id, headers = sign_up(anonymous, username="dup-" + uuid.uuid4().hex[:6])
    name = anonymous.get("/api/v1/whoami", headers=headers).json()["user_id"]
    assert name == user_id
    with stack.client("admin") as admin:
        username = admin.get("/api/v1/list_users").json()["user_name_list"][
            admin.get("/api/v1/list_users").json()["user_id_list"].index(user_id)
        ]
        again = anonymous.post(
            "/api/v1/register_user", json={"username": username, "password": "another password"}
        )
        assert again.status_code == 400
        assert again.json()["detail"]["error"] == f"Username {username} already exists."
        twice = admin.post("/api/v1/create_user", json={"user_id": user_id})
        assert twice.status_code == 409
        assert twice.json()["detail"]["error"] == f"User {user_id} already exists."
        nobody = "nobody-" + uuid.uuid4().hex
        assert admin.post("/api/v1/delete_user", json={"user_id": nobody}).status_code == 404
        assert admin.get(f"/api/v1/list_characters/{nobody}").status_code == 404


def test_deleting_a_user_removes_everything(stack: Stack, anonymous: httpx.Client) -> None:
    user_id, headers = sign_up(anonymous)
    assert (
        anonymous.post(
            "/api/v1/delete_user", json={"user_id": user_id}, headers=headers
        ).status_code
        == 200
    )
    with MongoClient(stack.config.mongodb_uri) as client:
        database = client[stack.db_name]
        for collection in ("UserCredentials", "UserConfigs", "CharacterConfigs", "UserSessions"):
            assert database[collection].count_documents({"user_id": user_id}) == 0, collection
    # Its token went with it.
    assert anonymous.get(f"/api/v1/list_characters/{user_id}", headers=headers).status_code == 401


def test_passwords_are_hashed_and_changes_end_sessions(
    stack: Stack, anonymous: httpx.Client
) -> None:
    username = f"pw-{uuid.uuid4().hex[:8]}"
    user_id, headers = sign_up(anonymous, username)
    with MongoClient(stack.config.mongodb_uri) as client:
        stored = client[stack.db_name]["UserCredentials"].find_one({"user_id": user_id})
    assert stored["password_hash"].startswith("$argon2id$")
    assert "correct horse battery" not in str(stored)
    change = {
        "username": username,
        "password": "correct horse battery",
        "new_password": "new secret words",
    }
    assert anonymous.post("/api/v1/update_user_password", json=change).status_code == 200
    assert anonymous.get(f"/api/v1/list_characters/{user_id}", headers=headers).status_code == 401
    old = anonymous.post(
        "/api/v1/authenticate_user",
        json={"username": username, "password": "correct horse battery"},
    )
    assert old.status_code == 400
    assert old.json()["detail"]["error"] == "Incorrect username or password."
    new = anonymous.post(
        "/api/v1/authenticate_user", json={"username": username, "password": "new secret words"}
    )
    assert new.status_code == 200
    short = anonymous.post(
        "/api/v1/register_user", json={"username": "x" + username, "password": "short"}
    )
    assert short.status_code == 422
    assert short.json()["detail"]["errors"][0]["field"] == "password"


def test_repeated_failures_lock_the_username(anonymous: httpx.Client) -> None:
    username = f"lock-{uuid.uuid4().hex[:8]}"
    sign_up(anonymous, username)
    wrong = {"username": username, "password": "not the password"}
    statuses = [
        anonymous.post("/api/v1/authenticate_user", json=wrong).status_code for _ in range(6)
    ]
    assert statuses[:5] == [400] * 5
    assert statuses[5] == 429
    locked = anonymous.post(
        "/api/v1/authenticate_user",
        json={"username": username, "password": "correct horse battery"},
    )
    # Even the right password waits until the lock ends.
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
