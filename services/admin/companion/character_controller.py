"""The companion app's per-user config and characters (`/api/v1`).

Access: the admin credential reaches everything; a token from `authenticate_user`
reaches only its own user's config and characters (another user's id answers 404);
register and sign-in are open but rate-limited; listing users and logs is admin-only.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from services.admin.access import (
    SIGNED_IN,
    authorize_user,
)
from services.admin.companion import users
from services.admin.companion.replies import CHARACTER_ERRORS, USER_ERRORS, UserIdPath, done
from services.admin.companion.schemas import (
    MODEL_SECTION_UPDATES,
    AsrUpdate,
    AvatarUpdate,
    Character,
    CharacterIdReply,
    CharacterList,
    CharacterRef,
    DuplicateCharacter,
    MissingSecrets,
    NameUpdate,
    Options,
    PromptUpdate,
    SceneUpdate,
    TtsUpdate,
    UserConfigUpdate,
    UserConfigView,
)
from services.admin.deps import Vault
from services.common.web.bodies import Record, json_body
from services.common.web.openapi import documented_body
from services.common.web.validation import read_record


class UserConfigController(Controller):
    path = "/api/v1"
    guards = SIGNED_IN
    tags = ["user config"]

    @json_body
    @post(
        "/update_user_config",
        operation_id="updateUserConfig",
        summary="Set provider keys and settings; only the fields given change",
        description="Keys are encrypted at rest and never returned, at most masked. "
        'null or absent leaves a field unchanged; "" clears a key.',
        responses=USER_ERRORS,
        status_code=200,
    )
    async def update_user_config(
        self, vault: Vault, request: Request, record: Record[UserConfigUpdate]
    ) -> Response[None]:
        await authorize_user(request, record.user_id)
        changes = {
            name: getattr(record, name) for name in record.__struct_fields__ if name != "user_id"
        }
        await users.update_user_config(vault, record.user_id, changes)
        return done()

    @get(
        "/get_user_config/{user_id:str}",
        operation_id="getUserConfig",
        summary="A user's settings, and which keys are set (masked)",
        responses=USER_ERRORS,
    )
    async def get_user_config(
        self, vault: Vault, request: Request, user_id: UserIdPath
    ) -> UserConfigView:
        await authorize_user(request, user_id)
        return users.config_view(vault, await users.user_config(user_id))

    async def _options(
        self, request: Request, user_id: str, needs: dict[str, tuple[str, ...]]
    ) -> Options:
        await authorize_user(request, user_id)
        return Options(options=await users.available(user_id, needs))

    @get(
        "/get_available_llm/{user_id:str}",
        operation_id="availableLlm",
        summary="LLM providers whose keys are all set",
        responses=USER_ERRORS,
    )
    async def available_llm(self, request: Request, user_id: UserIdPath) -> Options:
        return await self._options(request, user_id, users.LLM_NEEDS)

    @get(
        "/get_available_asr/{user_id:str}",
        operation_id="availableAsr",
        summary="Speech recognition options",
        responses=USER_ERRORS,
    )
    async def available_asr(self, request: Request, user_id: UserIdPath) -> Options:
        return await self._options(request, user_id, users.ASR_NEEDS)

    @get(
        "/get_available_tts/{user_id:str}",
        operation_id="availableTts",
        summary="Speech synthesis options",
        responses=USER_ERRORS,
    )
    async def available_tts(self, request: Request, user_id: UserIdPath) -> Options:
        return await self._options(request, user_id, users.TTS_NEEDS)


def _update_handler(part: str, body_type: type[CharacterRef], summary: str) -> Any:
    """`update_character_<part>`: checks the body, then sets the fields it carries
    beyond `user_id` and `character_id` on the user's character."""
    fields = tuple(
        name for name in body_type.__struct_fields__ if name not in CharacterRef.__struct_fields__
    )

    @post(
        f"/update_character_{part}",
        operation_id=f"updateCharacter{part.title()}",
        summary=summary,
        operation_class=documented_body(body_type),
        responses=CHARACTER_ERRORS,
        status_code=200,
    )
    async def update(self: Controller, request: Request) -> Response[None]:
        return await _update(request, await read_record(request, body_type), fields)

    update.__name__ = f"update_character_{part}"  # type: ignore[attr-defined]  # the handler's name: its operationId
    return update


def _model_section_handler(section: str) -> Any:
    summary = f"Set the {section} adapter and model override"
    return _update_handler(section, MODEL_SECTION_UPDATES[section], summary)


async def _update(request: Request, body: CharacterRef, fields: tuple[str, ...]) -> Response[None]:
    await authorize_user(request, body.user_id)
    changes = {name: getattr(body, name) for name in fields}
    await users.update_character(body.user_id, body.character_id, changes)
    return done()


class CharacterController(Controller):
    path = "/api/v1"
    guards = SIGNED_IN
    tags = ["characters"]

    @get(
        "/list_characters/{user_id:str}",
        operation_id="listCharacters",
        summary="A user's characters, in creation order",
        responses=USER_ERRORS,
    )
    async def list_characters(self, request: Request, user_id: UserIdPath) -> CharacterList:
        await authorize_user(request, user_id)
        found = await users.characters_of(user_id)
        return CharacterList(
            character_id_list=[c.character_id for c in found],
            character_name_list=[c.character_name for c in found],
        )

    @get(
        "/get_character_config/{user_id:str}/{character_id:str}",
        operation_id="getCharacterConfig",
        summary="A character's whole config",
        responses=CHARACTER_ERRORS,
    )
    async def get_character_config(
        self, request: Request, user_id: UserIdPath, character_id: FromPath[str]
    ) -> Character:
        await authorize_user(request, user_id)
        return users.to_wire(await users.character(user_id, character_id))

    @get(
        "/get_missing_secrets/{user_id:str}/{character_id:str}",
        operation_id="getMissingSecrets",
        summary="The provider keys a character still needs, by kind",
        responses=CHARACTER_ERRORS,
    )
    async def get_missing_secrets(
        self, request: Request, user_id: UserIdPath, character_id: FromPath[str]
    ) -> MissingSecrets:
        await authorize_user(request, user_id)
        return await users.missing_secrets(user_id, character_id)

    @json_body
    @post(
        "/duplicate_character",
        operation_id="duplicateCharacter",
        summary="An editable copy, renamed when a name is given",
        responses=CHARACTER_ERRORS,
        status_code=200,
    )
    async def duplicate_character(
        self, request: Request, record: Record[DuplicateCharacter]
    ) -> CharacterIdReply:
        await authorize_user(request, record.user_id)
        copy_id = await users.duplicate(record.user_id, record.character_id, record.character_name)
        return CharacterIdReply(character_id=copy_id)

    @json_body
    @post(
        "/delete_character",
        operation_id="deleteCharacter",
        summary="Delete an editable character (read-only ones: 403)",
        responses=CHARACTER_ERRORS,
        status_code=200,
    )
    async def delete_character(
        self, request: Request, record: Record[CharacterRef]
    ) -> Response[None]:
        await authorize_user(request, record.user_id)
        await users.delete_character(record.user_id, record.character_id)
        return done()

    update_character_name = _update_handler("name", NameUpdate, "Rename a character")
    update_character_avatar = _update_handler("avatar", AvatarUpdate, "Change a character's avatar")
    update_character_scene = _update_handler("scene", SceneUpdate, "Change a character's scene")
    update_character_prompt = _update_handler("prompt", PromptUpdate, "Change a character's prompt")
    update_character_asr = _update_handler(
        "asr", AsrUpdate, "Change a character's speech recognition"
    )
    update_character_tts = _update_handler("tts", TtsUpdate, "Change a character's voice")
    update_character_classification = _model_section_handler("classification")
    update_character_conversation = _model_section_handler("conversation")
    update_character_reaction = _model_section_handler("reaction")
    update_character_memory = _model_section_handler("memory")
