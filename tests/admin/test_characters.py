"""Characters and user configs: duplicates, sections, read-only templates, keys."""

from __future__ import annotations

import json

import pytest
from pymongo import MongoClient

from services.admin.companion.schemas import TTS_ADAPTERS
from tests.admin.test_users import sign_up
from tests.conftest import Stack

KEY = "sk-live-0123456789abcdefSECRET"


@pytest.fixture
def user(stack: Stack):
    with stack.client() as anonymous:
        user_id, headers = sign_up(anonymous)
        anonymous.headers.update(headers)
        first = anonymous.get(f"/api/v1/list_characters/{user_id}").json()["character_id_list"][0]
        yield anonymous, user_id, first


def test_duplicate_update_and_delete(user) -> None:
    client, user_id, template = user
    named = client.post(
        "/api/v1/duplicate_character",
        json={"user_id": user_id, "character_id": template, "character_name": "My Ani"},
    )
    assert named.status_code == 200
    copy = named.json()["character_id"]
    unnamed = client.post(
        "/api/v1/duplicate_character", json={"user_id": user_id, "character_id": template}
    ).json()["character_id"]
    original = client.get(f"/api/v1/get_character_config/{user_id}/{template}").json()
    config = client.get(f"/api/v1/get_character_config/{user_id}/{copy}").json()
    assert config["read_only"] is False
    assert config["character_name"] == "My Ani"
    assert config["prompt"] == original["prompt"]
    unnamed_config = client.get(f"/api/v1/get_character_config/{user_id}/{unnamed}").json()
    assert unnamed_config["character_name"] == original["character_name"]
    ids = client.get(f"/api/v1/list_characters/{user_id}").json()["character_id_list"]
    assert ids[-2:] == [copy, unnamed]  # creation order

    ref = {"user_id": user_id, "character_id": copy}
    updates = [
        ("name", {"character_name": "Renamed"}),
        ("avatar", {"avatar": "HT-default"}),
        ("scene", {"scene_name": "beach"}),
        ("prompt", {"prompt": "You are calm."}),
        ("asr", {"asr_adapter": "openai"}),
        ("tts", {"tts_adapter": "elevenlabs", "voice": "Rachel", "voice_speed": 1.25}),
        (
            "classification",
            {"classification_adapter": "xai_omni", "classification_model_override": "grok-4"},
        ),
        ("conversation", {"conversation_adapter": "anthropic_omni"}),
        ("reaction", {"reaction_adapter": "gemini_omni", "reaction_model_override": "flash"}),
        ("memory", {"memory_adapter": "deepseek_omni"}),
    ]
    for section, fields in updates:
        response = client.post(f"/api/v1/update_character_{section}", json={**ref, **fields})
        assert response.status_code == 200, (section, response.text)
        assert response.content == b""
    config = client.get(f"/api/v1/get_character_config/{user_id}/{copy}").json()
    for _, fields in updates:
        for name, value in fields.items():
            assert config[name] == value, name
    assert config["conversation_model_override"] == ""

    assert client.post("/api/v1/delete_character", json=ref).status_code == 200
    gone = client.get(f"/api/v1/get_character_config/{user_id}/{copy}")
    assert gone.status_code == 404
    assert gone.json()["detail"]["error"] == (
        f"Character not found for user_id: {user_id} and character_id: {copy}."
    )


def test_templates_are_read_only(user) -> None:
    client, user_id, template = user
    ref = {"user_id": user_id, "character_id": template}
    for path, fields in [
        ("update_character_name", {"character_name": "x"}),
        ("update_character_prompt", {"prompt": "x"}),
        ("update_character_memory", {"memory_adapter": "openai_omni"}),
        ("delete_character", {}),
    ]:
        response = client.post(f"/api/v1/{path}", json={**ref, **fields})
        assert response.status_code == 403, path
        assert response.json()["detail"]["error"] == "Character is read-only and cannot be modified"
    unknown = client.post(
        "/api/v1/update_character_name", json={**ref, "character_id": "nope", "character_name": "x"}
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("section", "fields", "field"),
    [
        ("asr", {"asr_adapter": "whisper-local"}, "asr_adapter"),
        ("tts", {"tts_adapter": "zoetrope", "voice_speed": 0}, "voice_speed"),
        ("tts", {"tts_adapter": "zoetrope", "voice_speed": "fast"}, "voice_speed"),
        ("tts", {"tts_adapter": "robot"}, "tts_adapter"),
        ("memory", {"memory_adapter": "openai"}, "memory_adapter"),
        (
            "reaction",
            {"reaction_adapter": "xai_omni", "reaction_model_override": "m" * 129},
            "reaction_model_override",
        ),
        ("name", {"character_name": ""}, "character_name"),
        ("avatar", {"avatar": "../etc/passwd"}, "avatar"),
        ("prompt", {}, "prompt"),
    ],
)
def test_sections_are_validated(user, section: str, fields: dict, field: str) -> None:
    client, user_id, template = user
    copy = client.post(
        "/api/v1/duplicate_character", json={"user_id": user_id, "character_id": template}
    ).json()["character_id"]
    before = client.get(f"/api/v1/get_character_config/{user_id}/{copy}").json()
    response = client.post(
        f"/api/v1/update_character_{section}",
        json={"user_id": user_id, "character_id": copy, **fields},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["errors"][0]["field"] == field
    assert client.get(f"/api/v1/get_character_config/{user_id}/{copy}").json() == before


def test_provider_keys_and_availability(stack: Stack, user) -> None:
    client, user_id, _ = user
    fresh = {
        kind: client.get(f"/api/v1/get_available_{kind}/{user_id}").json()["options"]
        for kind in ("llm", "asr", "tts")
    }
    # Zoetrope and Chatterbox run without a provider key.
    assert fresh == {"llm": [], "asr": ["zoetrope"], "tts": ["zoetrope", "chatterbox"]}
    update = {
        "user_id": user_id,
        "openai_api_key": KEY,
        "sensenova_ak": "ak-value-123",
        "huoshan_app_id": "app-1",
        "huoshan_token": "token-value-456",
        "timezone": "Asia/Taipei",
    }
    # A field the service does not know is refused by name, and nothing changes.
    unknown = client.post("/api/v1/update_user_config", json={**update, "not_a_key": "x"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"]["errors"][0]["field"] == "not_a_key"
    assert client.get(f"/api/v1/get_available_llm/{user_id}").json()["options"] == []
    response = client.post("/api/v1/update_user_config", json=update)
    assert response.status_code == 200
    assert response.content == b""
    options = {
        kind: client.get(f"/api/v1/get_available_{kind}/{user_id}").json()["options"]
        for kind in ("llm", "asr", "tts")
    }
    # sensenova needs both ak and sk.
    assert options == {
        "llm": ["openai"],
        "asr": ["zoetrope", "openai", "openai_realtime", "huoshan"],
        "tts": ["zoetrope", "huoshan", "huoshan_icl", "chatterbox"],
    }
    client.post("/api/v1/update_user_config", json={"user_id": user_id, "sensenova_sk": "sk-2"})
    assert client.get(f"/api/v1/get_available_llm/{user_id}").json()["options"] == [
        "openai",
        "sensenova",
    ]
    # null leaves a key as it is; "" clears it.
    client.post("/api/v1/update_user_config", json={"user_id": user_id, "openai_api_key": None})
    assert "openai" in client.get(f"/api/v1/get_available_llm/{user_id}").json()["options"]
    view = client.get(f"/api/v1/get_user_config/{user_id}").json()
    assert view["keys"]["openai_api_key"] == "****CRET"
    assert view["settings"]["timezone"] == "Asia/Taipei"
    client.post("/api/v1/update_user_config", json={"user_id": user_id, "huoshan_token": ""})
    tts = client.get(f"/api/v1/get_available_tts/{user_id}").json()["options"]
    assert tts == ["zoetrope", "chatterbox"]

    with stack.client("admin") as admin:
        assert admin.get("/api/v1/get_available_llm/nobody-here").status_code == 404
        missing = admin.post("/api/v1/update_user_config", json={"user_id": "nobody-here"})
        assert missing.status_code == 404

    # The key is nowhere in clear: not in the database, not in any log.
    with MongoClient(stack.config.mongodb_uri) as mongo:
        stored = mongo[stack.db_name]["UserConfigs"].find_one({"user_id": user_id})
    assert KEY not in json.dumps(stored, default=str)
    assert "ak-value-123" not in json.dumps(stored, default=str)
    for log in stack.config.log_dir.glob("*.log"):
        assert KEY not in log.read_text(), log


def test_openapi_lists_error_responses(stack: Stack) -> None:
    with stack.client() as anonymous:
        schema = anonymous.get("/docs/admin/openapi.json").json()
    operation = schema["paths"]["/api/v1/get_character_config/{user_id}/{character_id}"]["get"]
    for code in ("401", "403", "404", "422"):
        assert code in operation["responses"], code
    not_found = operation["responses"]["404"]["content"]["application/json"]["schema"]
    assert not_found["$ref"].endswith("ErrorEnvelope")
    body = schema["paths"]["/api/v1/update_character_tts"]["post"]["requestBody"]
    properties = body["content"]["application/json"]["schema"]["properties"]
    assert set(properties["tts_adapter"]["enum"]) == set(TTS_ADAPTERS)
