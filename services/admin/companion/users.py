"""The companion app's users and what they own: their config (settings and provider
keys, encrypted in services.admin.companion.accounts.KeyVault) and their characters,
the defaults read-only and copied on first use.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import msgspec
from pymongo.errors import DuplicateKeyError

from services.admin.companion.accounts import READ_ONLY, Defaults, KeyVault, creation_time, mask
from services.admin.companion.schemas import (
    MODEL_SECTIONS,
    PLAIN_SETTINGS,
    PROVIDER_KEYS,
    Character,
    MissingSecrets,
    UserConfigView,
)
from services.admin.models import CharacterConfig, UserConfig, UserCredential, UserSession
from services.common.web.errors import (
    Conflict,
    Forbidden,
    NotFound,
)
from services.common.web.schemas import utc_now


async def create_user(defaults: Defaults, vault: KeyVault, user_id: str) -> None:
    """The user's config from the defaults, and a read-only copy of every default character."""
    if await UserConfig.find_one(UserConfig.user_id == user_id):
        raise Conflict(f"User {user_id} already exists.")
    keys = {
        name: vault.encrypt(value)
        for name, value in defaults.user_config.items()
        if name in PROVIDER_KEYS and value
    }
    settings = {name: defaults.user_config.get(name) for name in PLAIN_SETTINGS}
    try:
        await UserConfig(user_id=user_id, encrypted_keys=keys, settings=settings).insert()
    except DuplicateKeyError:
        raise Conflict(f"User {user_id} already exists.") from None
    now = utc_now()
    await CharacterConfig.insert_many(
        [
            CharacterConfig(
                **msgspec.structs.asdict(template),
                user_id=user_id,
                character_id=str(uuid.uuid4()),
                read_only=True,
                create_datatime=creation_time(now),
            )
            for template in defaults.characters
        ]
    )


async def ensure_user(defaults: Defaults, vault: KeyVault, user_id: str) -> None:
    """`create_user` once: what the current front end relies on at sign-in, since it
    never calls `create_user` itself."""
    with contextlib.suppress(Conflict):
        await create_user(defaults, vault, user_id)


async def delete_user(user_id: str) -> None:
    found = [
        await UserCredential.find(UserCredential.user_id == user_id).delete(),
        await UserConfig.find(UserConfig.user_id == user_id).delete(),
        await CharacterConfig.find(CharacterConfig.user_id == user_id).delete(),
    ]
    await UserSession.find(UserSession.user_id == user_id).delete()
    if not any(result is not None and result.deleted_count for result in found):
        raise NotFound(f"User {user_id} not found.")


async def user_config(user_id: str) -> UserConfig:
    config = await UserConfig.find_one(UserConfig.user_id == user_id)
    if config is None:
        raise NotFound(f"User config not found for user_id: {user_id}.")
    return config


async def update_user_config(vault: KeyVault, user_id: str, changes: dict[str, Any]) -> None:
    """Only the fields given change; null leaves a field as it is, "" clears a key."""
    config = await user_config(user_id)
    keys = dict(config.encrypted_keys)
    settings = dict(config.settings)
    for name, value in changes.items():
        if value is None:
            continue
        if name in PROVIDER_KEYS:
            if value == "":
                keys.pop(name, None)
            else:
                keys[name] = vault.encrypt(value)
        elif name in PLAIN_SETTINGS:
            settings[name] = value
    await config.set({"encrypted_keys": keys, "settings": settings})


def config_view(vault: KeyVault, config: UserConfig) -> UserConfigView:
    return UserConfigView(
        user_id=config.user_id,
        keys={name: mask(vault.decrypt(token)) for name, token in config.encrypted_keys.items()},
        settings=dict(config.settings),
    )


# Which providers a user can use: each needs every one of its keys.
LLM_NEEDS = {
    "openai": ("openai_api_key",),
    "xai": ("xai_api_key",),
    "anthropic": ("anthropic_api_key",),
    "gemini": ("gemini_api_key",),
    "deepseek": ("deepseek_api_key",),
    "sensenova": ("sensenova_ak", "sensenova_sk"),
    "minimax": ("minimax_api_key",),
    "sensechat": ("sensechat_ak", "sensechat_sk"),
}
ASR_NEEDS = {
    "zoetrope": (),
    "openai": ("openai_api_key",),
    "openai_realtime": ("openai_api_key",),
    "softsugar": ("softsugar_app_id", "softsugar_app_key"),
    "huoshan": ("huoshan_app_id", "huoshan_token"),
}
TTS_NEEDS = {
    "zoetrope": (),
    "huoshan": ("huoshan_app_id", "huoshan_token"),
    "huoshan_icl": ("huoshan_app_id", "huoshan_token"),
    "softsugar": ("softsugar_app_id", "softsugar_app_key"),
    "sensenova": ("nova_tts_api_key",),
    "elevenlabs": ("elevenlabs_api_key",),
    # Runs beside the companion app, without a provider key.
    "chatterbox": (),
}


async def available(user_id: str, needs: dict[str, tuple[str, ...]]) -> list[str]:
    present = set((await user_config(user_id)).encrypted_keys)
    return [option for option, keys in needs.items() if set(keys) <= present]


async def missing_secrets(user_id: str, character_id: str) -> MissingSecrets:
    """The keys the character's adapters need that the user has not set."""
    found = await character(user_id, character_id)
    present = set((await user_config(user_id)).encrypted_keys)

    def missing(needed: tuple[str, ...]) -> list[str]:
        return [key for key in needed if key not in present]

    llm: list[str] = []
    for section in MODEL_SECTIONS:
        provider = getattr(found, f"{section}_adapter", "").split("_", 1)[0]
        llm += [key for key in missing(LLM_NEEDS.get(provider, ())) if key not in llm]
    return MissingSecrets(
        llm_requirements=llm,
        tts_requirements=missing(TTS_NEEDS.get(found.tts_adapter, ())),
        asr_requirements=missing(ASR_NEEDS.get(found.asr_adapter, ())),
    )


# --- characters ---------------------------------------------------------------------


async def characters_of(user_id: str) -> list[CharacterConfig]:
    found = await CharacterConfig.find(CharacterConfig.user_id == user_id).sort("_id").to_list()
    if not found:
        await user_config(user_id)  # 404 for a user that does not exist
    return found


async def character(user_id: str, character_id: str) -> CharacterConfig:
    found = await CharacterConfig.find_one(
        CharacterConfig.user_id == user_id, CharacterConfig.character_id == character_id
    )
    if found is None:
        raise NotFound(
            f"Character not found for user_id: {user_id} and character_id: {character_id}."
        )
    return found


def to_wire(found: CharacterConfig) -> Character:
    fields = found.model_dump(exclude={"id", "revision_id"})
    return msgspec.convert(fields, Character)


async def duplicate(user_id: str, character_id: str, name: str | None) -> str:
    original = await character(user_id, character_id)
    fields = original.model_dump(exclude={"id", "revision_id"})
    copy_id = str(uuid.uuid4())
    fields.update(
        character_id=copy_id,
        read_only=False,
        create_datatime=creation_time(utc_now()),
        character_name=name if name is not None else fields["character_name"],
    )
    await CharacterConfig(**fields).insert()
    return copy_id


async def editable(user_id: str, character_id: str) -> CharacterConfig:
    found = await character(user_id, character_id)
    if found.read_only:
        raise Forbidden(READ_ONLY)
    return found


async def update_character(user_id: str, character_id: str, changes: dict[str, Any]) -> None:
    found = await editable(user_id, character_id)
    await found.set(changes)


async def delete_character(user_id: str, character_id: str) -> None:
    found = await editable(user_id, character_id)
    await found.delete()
