"""HTTP handlers of the admin service: the companion app's `/api/v1` contract (logs are in
`logs.py`, access rules in `access.py`).

Access: the admin credential reaches everything; a token from `authenticate_user`
reaches only its own user's config and characters (another user's id answers 404);
register and sign-in are open but rate-limited; listing users and logs is admin-only.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath

from services.admin import outcomes, services
from services.admin.access import (
    ADMIN_ONLY,
    SIGNED_IN,
    authorize_user,
    caller,
    limit_sign_in,
    settings_of,
    vault_of,
)
from services.admin.schemas import (
    MODEL_SECTION_UPDATES,
    AsrUpdate,
    AvatarUpdate,
    Character,
    CharacterIdReply,
    CharacterList,
    CharacterRef,
    Deleted,
    DuplicateCharacter,
    MissingSecrets,
    MotionKeywords,
    NameUpdate,
    Options,
    PasswordChange,
    PasswordChanged,
    PromptUpdate,
    Registered,
    Registration,
    SceneUpdate,
    SignedIn,
    SignIn,
    SignInOutcome,
    TtsUpdate,
    UserConfigUpdate,
    UserConfigView,
    UserDeletion,
    UserIdReply,
    UserList,
    UserRef,
    WhoAmI,
)
from services.common.research.tokens import AccessToken
from services.common.web.errors import AppError
from services.common.web.openapi import ALSO_EMPTY, documented_body, error_responses
from services.common.web.validation import read_record


def done() -> Response[Any]:
    """The original's reply to a change: 200 with an empty body (labelled as text: an
    empty body is no JSON document)."""
    return Response(content=b"", status_code=200, media_type=MediaType.TEXT)


USER_ERRORS = error_responses(401, 403, 404)
CHARACTER_ERRORS = error_responses(401, 403, 404)
OPEN_ERRORS = error_responses(400, 429)


class CredentialController(Controller):
    path = "/api/v1"
    tags = ["users"]

    @get(
        "/whoami",
        operation_id="whoami",
        summary="What a credential grants: a role, or a user's own data",
        responses=error_responses(401),
    )
    async def whoami(self, request: Request) -> WhoAmI:
        principal = await caller(request)
        name = None
        if principal.token_id:
            issued = await AccessToken.get_pymongo_collection().find_one(
                {"token_id": principal.token_id}, {"name": 1}
            )
            name = issued.get("name") if issued else None
        return WhoAmI(
            role=principal.role,
            user_id=principal.user_id,
            study_ids=list(principal.study_ids) if principal.study_ids is not None else None,
            token_id=principal.token_id,
            name=name,
        )

    @get(
        "/list_users",
        operation_id="listUsers",
        guards=ADMIN_ONLY,
        summary="Every user's id and name",
        responses=error_responses(401, 403),
    )
    async def list_users(self) -> UserList:
        credentials = await services.UserCredential.find_all().sort("_id").to_list()
        return UserList(
            user_id_list=[c.user_id for c in credentials],
            user_name_list=[c.username for c in credentials],
        )

    @get(
        "/list_user_credential_id",
        operation_id="listUserCredentialIds",
        guards=ADMIN_ONLY,
        summary="Ids of users with credentials",
        responses=error_responses(401, 403),
    )
    async def list_credential_ids(self) -> UserList:
        found = await services.UserCredential.find_all().sort("_id").to_list()
        return UserList(user_id_list=[c.user_id for c in found], user_name_list=None)

    @get(
        "/list_user_config_id",
        operation_id="listUserConfigIds",
        guards=ADMIN_ONLY,
        summary="Ids of users with a config",
        responses=error_responses(401, 403),
    )
    async def list_config_ids(self) -> UserList:
        found = await services.UserConfig.find_all().sort("_id").to_list()
        return UserList(user_id_list=[c.user_id for c in found], user_name_list=None)

    @post(
        "/register_user",
        operation_id="registerUser",
        summary="Create a credential (open; rate-limited per address)",
        operation_class=documented_body(Registration),
        responses=OPEN_ERRORS,
        status_code=200,
    )
    async def register_user(self, request: Request) -> UserIdReply | Registered:
        await limit_sign_in(request)
        body = await read_record(request, Registration)
        if body.language is None:
            return UserIdReply(user_id=await services.register(body.username, body.password))
        try:
            user_id = await services.register(body.username, body.password)
        except AppError as problem:
            code, text = outcomes.failure(problem, body.language)
            return Registered(user_id="", auth_code=code, auth_msg=text)
        text = outcomes.message("registered", body.language)
        return Registered(user_id=user_id, auth_code=outcomes.SUCCESS, auth_msg=text)

    @post(
        "/authenticate_user",
        operation_id="authenticateUser",
        summary="Sign in: the user's id, and a token for that user's own data",
        description="Failed sign-ins in a row lock the username for a while that doubles "
        "with each further failure (429 with Retry-After). With `language` (the current "
        "front end), the outcome is in the body (`auth_code`, `auth_msg`) and the user's "
        "config and default characters are made on the first sign-in.",
        operation_class=documented_body(SignIn),
        responses=OPEN_ERRORS,
        status_code=200,
    )
    async def authenticate_user(self, request: Request) -> SignedIn | SignInOutcome:
        await limit_sign_in(request)
        body = await read_record(request, SignIn)
        settings = settings_of(request)
        if body.language is None:
            credential = await services.check_password(settings, body.username, body.password)
            token, expires_at = await services.start_session(settings, credential.user_id)
            return SignedIn(user_id=credential.user_id, token=token, token_expires_at=expires_at)
        try:
            credential = await services.check_password(settings, body.username, body.password)
        except AppError as problem:
            code, text = outcomes.failure(problem, body.language)
            return SignInOutcome(user_id="", auth_code=code, auth_msg=text)
        defaults = request.app.state.defaults
        await services.ensure_user(defaults, vault_of(request), credential.user_id)
        token, expires_at = await services.start_session(settings, credential.user_id)
        return SignInOutcome(
            user_id=credential.user_id,
            auth_code=outcomes.SUCCESS,
            auth_msg=outcomes.message("signed_in", body.language),
            token=token,
            token_expires_at=expires_at,
        )

    @post(
        "/update_user_password",
        operation_id="updateUserPassword",
        summary="Change a password (ends every session of that user)",
        operation_class=documented_body(PasswordChange),
        responses=OPEN_ERRORS,
        status_code=200,
        opt={ALSO_EMPTY: True},
    )
    async def update_user_password(self, request: Request) -> Response[PasswordChanged | None]:
        await limit_sign_in(request)
        body = await read_record(request, PasswordChange)
        settings = settings_of(request)
        try:
            credential = await services.check_password(settings, body.username, body.password)
        except AppError as problem:
            if body.language is None:
                raise
            code, text = outcomes.failure(problem, body.language)
            return Response(PasswordChanged(auth_code=code, auth_msg=text))
        await services.change_password(credential, body.new_password)
        if body.language is None:
            return done()
        text = outcomes.message("password_changed", body.language)
        return Response(PasswordChanged(auth_code=outcomes.SUCCESS, auth_msg=text))

    @post(
        "/create_user",
        operation_id="createUser",
        guards=SIGNED_IN,
        summary="The user's default config and a read-only copy of every default character",
        operation_class=documented_body(UserRef),
        responses=error_responses(401, 403, 404, 409),
        status_code=200,
    )
    async def create_user(self, request: Request) -> Response[None]:
        body = await read_record(request, UserRef)
        await authorize_user(request, body.user_id)
        await services.create_user(request.app.state.defaults, vault_of(request), body.user_id)
        return done()

    @post(
        "/delete_user",
        operation_id="deleteUser",
        guards=SIGNED_IN,
        summary="Remove a user's credential, config, characters and sessions",
        description="The current front end also sends the account's `username` and "
        "`password`, which must belong to `user_id`, and `language`; it gets the outcome "
        "in the body.",
        operation_class=documented_body(UserDeletion),
        responses=USER_ERRORS,
        status_code=200,
        opt={ALSO_EMPTY: True},
    )
    async def delete_user(self, request: Request) -> Response[Deleted | None]:
        body = await read_record(request, UserDeletion)
        await authorize_user(request, body.user_id)
        if body.language is None:
            await services.delete_user(body.user_id)
            return done()
        try:
            if body.username is None or body.password is None:
                raise services.SignInRejected("username and password are required")
            settings = settings_of(request)
            credential = await services.check_password(settings, body.username, body.password)
            if credential.user_id != body.user_id:
                raise services.SignInRejected("the account is not this user's")
        except AppError as problem:
            code, text = outcomes.failure(problem, body.language)
            return Response(Deleted(user_id="", auth_code=code, auth_msg=text))
        await services.delete_user(body.user_id)
        text = outcomes.message("deleted", body.language)
        return Response(Deleted(user_id=body.user_id, auth_code=outcomes.SUCCESS, auth_msg=text))


UserIdPath = FromPath[str]


class OrchestratorController(Controller):
    """What the companion app's orchestrator reads at start-up: not personal data."""

    path = "/api/v1"
    tags = ["companion app"]

    @get(
        "/motion_keywords",
        operation_id="motionKeywords",
        summary="Words the orchestrator turns into an avatar's motions",
    )
    async def motion_keywords(self, request: Request) -> MotionKeywords:
        return MotionKeywords(motion_keywords=request.app.state.defaults.motion_keywords)


class UserConfigController(Controller):
    path = "/api/v1"
    guards = SIGNED_IN
    tags = ["user config"]

    @post(
        "/update_user_config",
        operation_id="updateUserConfig",
        summary="Set provider keys and settings; only the fields given change",
        description="Keys are encrypted at rest and never returned, at most masked. "
        'null or absent leaves a field unchanged; "" clears a key.',
        operation_class=documented_body(UserConfigUpdate),
        responses=USER_ERRORS,
        status_code=200,
    )
    async def update_user_config(self, request: Request) -> Response[None]:
        body = await read_record(request, UserConfigUpdate)
        await authorize_user(request, body.user_id)
        changes = {
            name: getattr(body, name) for name in body.__struct_fields__ if name != "user_id"
        }
        await services.update_user_config(vault_of(request), body.user_id, changes)
        return done()

    @get(
        "/get_user_config/{user_id:str}",
        operation_id="getUserConfig",
        summary="A user's settings, and which keys are set (masked)",
        responses=USER_ERRORS,
    )
    async def get_user_config(self, request: Request, user_id: UserIdPath) -> UserConfigView:
        await authorize_user(request, user_id)
        return services.config_view(vault_of(request), await services.user_config(user_id))

    async def _options(
        self, request: Request, user_id: str, needs: dict[str, tuple[str, ...]]
    ) -> Options:
        await authorize_user(request, user_id)
        return Options(options=await services.available(user_id, needs))

    @get(
        "/get_available_llm/{user_id:str}",
        operation_id="availableLlm",
        summary="LLM providers whose keys are all set",
        responses=USER_ERRORS,
    )
    async def available_llm(self, request: Request, user_id: UserIdPath) -> Options:
        return await self._options(request, user_id, services.LLM_NEEDS)

    @get(
        "/get_available_asr/{user_id:str}",
        operation_id="availableAsr",
        summary="Speech recognition options",
        responses=USER_ERRORS,
    )
    async def available_asr(self, request: Request, user_id: UserIdPath) -> Options:
        return await self._options(request, user_id, services.ASR_NEEDS)

    @get(
        "/get_available_tts/{user_id:str}",
        operation_id="availableTts",
        summary="Speech synthesis options",
        responses=USER_ERRORS,
    )
    async def available_tts(self, request: Request, user_id: UserIdPath) -> Options:
        return await self._options(request, user_id, services.TTS_NEEDS)


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
    await services.update_character(body.user_id, body.character_id, changes)
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
        found = await services.characters_of(user_id)
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
        return services.to_wire(await services.character(user_id, character_id))

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
        return await services.missing_secrets(user_id, character_id)

    @post(
        "/duplicate_character",
        operation_id="duplicateCharacter",
        summary="An editable copy, renamed when a name is given",
        operation_class=documented_body(DuplicateCharacter),
        responses=CHARACTER_ERRORS,
        status_code=200,
    )
    async def duplicate_character(self, request: Request) -> CharacterIdReply:
        body = await read_record(request, DuplicateCharacter)
        await authorize_user(request, body.user_id)
        copy_id = await services.duplicate(body.user_id, body.character_id, body.character_name)
        return CharacterIdReply(character_id=copy_id)

    @post(
        "/delete_character",
        operation_id="deleteCharacter",
        summary="Delete an editable character (read-only ones: 403)",
        operation_class=documented_body(CharacterRef),
        responses=CHARACTER_ERRORS,
        status_code=200,
    )
    async def delete_character(self, request: Request) -> Response[None]:
        body = await read_record(request, CharacterRef)
        await authorize_user(request, body.user_id)
        await services.delete_character(body.user_id, body.character_id)
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
