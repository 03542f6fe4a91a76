"""Every value the companion app's screens (both releases) offer is saved: scenes with
spaces, the current release's adapters and providers, every key field; and a field the
service does not know is refused by name instead of silently dropped."""

from __future__ import annotations

import httpx
import pytest

from tests.admin.test_characters import user  # noqa: F401 - the fixture

# What the current release's screens offer, from its request module and screens.
SCENES = ("Ground View", "Cobbled Street", "Cyber Black", "Seabed", "Vast", "Green", "vast")
ASR = ("zoetrope", "openai", "openai_realtime", "softsugar", "huoshan")
MODEL_ADAPTERS = (
    "openai_omni",
    "openai_agent",
    "openai_classification",
    "openai_reaction",
    "openai_memory",
    "sensenova_omni_agent",
    "minimax_agent",
    "sensechat_omni",
)
NEW_KEYS = ("minimax_api_key", "sensechat_ak", "sensechat_sk", "zoetrope_tts_api_key")


def _editable(client: httpx.Client, user_id: str, template: str) -> dict[str, str]:
    copy = client.post(
        "/api/v1/duplicate_character", json={"user_id": user_id, "character_id": template}
    ).json()["character_id"]
    return {"user_id": user_id, "character_id": copy}


def _config(client: httpx.Client, ref: dict[str, str]) -> dict:
    return client.get(f"/api/v1/get_character_config/{ref['user_id']}/{ref['character_id']}").json()


def test_every_scene_the_screens_offer_is_saved(user) -> None:  # noqa: F811
    client, user_id, template = user
    ref = _editable(client, user_id, template)
    for scene in SCENES:
        answer = client.post("/api/v1/update_character_scene", json={**ref, "scene_name": scene})
        assert answer.status_code == 200, answer.text
        assert _config(client, ref)["scene_name"] == scene
    for bad in ("", "x" * 65, "line\nbreak", "tab\there"):
        refused = client.post("/api/v1/update_character_scene", json={**ref, "scene_name": bad})
        assert refused.status_code == 422
        assert refused.json()["detail"]["errors"][0]["field"] == "scene_name"


def test_every_adapter_the_screens_offer_is_saved(user) -> None:  # noqa: F811
    client, user_id, template = user
    ref = _editable(client, user_id, template)
    for adapter in ASR:
        answer = client.post("/api/v1/update_character_asr", json={**ref, "asr_adapter": adapter})
        assert answer.status_code == 200, answer.text
        assert _config(client, ref)["asr_adapter"] == adapter
    tts = {**ref, "tts_adapter": "chatterbox", "voice": "default"}
    assert client.post("/api/v1/update_character_tts", json=tts).status_code == 200
    assert _config(client, ref)["tts_adapter"] == "chatterbox"
    for section in ("classification", "conversation", "reaction", "memory"):
        for adapter in MODEL_ADAPTERS:
            body = {**ref, f"{section}_adapter": adapter}
            answer = client.post(f"/api/v1/update_character_{section}", json=body)
            assert answer.status_code == 200, (section, adapter, answer.text)
            assert _config(client, ref)[f"{section}_adapter"] == adapter
    unknown = client.post(
        "/api/v1/update_character_memory", json={**ref, "memory_adapter": "nobody_agent"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"]["errors"][0]["field"] == "memory_adapter"


def test_every_key_field_is_kept_and_counts_for_availability(user) -> None:  # noqa: F811
    client, user_id, _ = user
    before = {
        kind: client.get(f"/api/v1/get_available_{kind}/{user_id}").json()["options"]
        for kind in ("llm", "asr", "tts")
    }
    assert "chatterbox" in before["tts"]  # needs no key
    assert "minimax" not in before["llm"]
    keys = {name: f"secret-{name}-0123456789" for name in NEW_KEYS}
    keys |= {"huoshan_app_id": "app-0123456789", "huoshan_token": "token-0123456789"}
    body = {"user_id": user_id, **keys, "timezone": "Asia/Taipei"}
    assert client.post("/api/v1/update_user_config", json=body).status_code == 200
    view = client.get(f"/api/v1/get_user_config/{user_id}").json()
    text = str(view)
    for name, value in keys.items():
        assert name in text
        assert value not in text  # masked, never whole
    assert "Asia/Taipei" in text
    llm = client.get(f"/api/v1/get_available_llm/{user_id}").json()["options"]
    asr = client.get(f"/api/v1/get_available_asr/{user_id}").json()["options"]
    assert {"minimax", "sensechat"} <= set(llm)
    assert "huoshan" in asr


@pytest.mark.parametrize("field", ["zoetrope_api_key", "openai_key", "language"])
def test_a_key_field_the_service_does_not_know_is_refused_by_name(
    user,  # noqa: F811
    field: str,
) -> None:
    client, user_id, _ = user
    answer = client.post("/api/v1/update_user_config", json={"user_id": user_id, field: "x"})
    assert answer.status_code == 422
    problem = answer.json()["detail"]["errors"][0]
    assert problem == {"field": field, "reason": "is not a field of this request"}
