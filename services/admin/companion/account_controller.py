"""The companion app's accounts (`/api/v1`): register, sign in, passwords, users,
and the orchestrator's view of a user.

Access: the admin credential reaches everything; a token from `authenticate_user`
reaches only its own user's config and characters (another user's id answers 404);
register and sign-in are open but rate-limited; listing users and logs is admin-only.
"""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post

from services.admin.access import (
    ADMIN_ONLY,
    SIGNED_IN,
    authorize_user,
    caller,
    limit_sign_in,
)
from services.admin.companion import accounts, outcomes, users
from services.admin.companion.replies import OPEN_ERRORS, USER_ERRORS, done
from services.admin.companion.schemas import (
    Deleted,
    MotionKeywords,
    PasswordChange,
    PasswordChanged,
    Registered,
    Registration,
    SignedIn,
    SignIn,
    SignInOutcome,
    UserDeletion,
    UserIdReply,
    UserList,
    UserRef,
    WhoAmI,
)
from services.admin.deps import AppDefaults, Settings, Vault
from services.admin.models import UserConfig, UserCredential
from services.common.research.tokens import AccessToken
from services.common.web.bodies import Record, json_body
from services.common.web.errors import AppError
from services.common.web.openapi import ALSO_EMPTY, error_responses


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
        credentials = await UserCredential.find_all().sort("_id").to_list()
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
        found = await UserCredential.find_all().sort("_id").to_list()
        return UserList(user_id_list=[c.user_id for c in found], user_name_list=None)

    @get(
        "/list_user_config_id",
        operation_id="listUserConfigIds",
        guards=ADMIN_ONLY,
        summary="Ids of users with a config",
        responses=error_responses(401, 403),
    )
    async def list_config_ids(self) -> UserList:
        found = await UserConfig.find_all().sort("_id").to_list()
        return UserList(user_id_list=[c.user_id for c in found], user_name_list=None)

    @json_body(first=limit_sign_in)
    @post(
        "/register_user",
        operation_id="registerUser",
        summary="Create a credential (open; rate-limited per address)",
        responses=OPEN_ERRORS,
        status_code=200,
    )
    async def register_user(self, registration: Record[Registration]) -> UserIdReply | Registered:
        if registration.language is None:
            return UserIdReply(
                user_id=await accounts.register(registration.username, registration.password)
            )
        try:
            user_id = await accounts.register(registration.username, registration.password)
        except AppError as problem:
            code, text = outcomes.failure(problem, registration.language)
            return Registered(user_id="", auth_code=code, auth_msg=text)
        text = outcomes.message("registered", registration.language)
        return Registered(user_id=user_id, auth_code=outcomes.SUCCESS, auth_msg=text)

    @json_body(first=limit_sign_in)
    @post(
        "/authenticate_user",
        operation_id="authenticateUser",
        summary="Sign in: the user's id, and a token for that user's own data",
        description="Failed sign-ins in a row lock the username for a while that doubles "
        "with each further failure (429 with Retry-After). With `language` (the current "
        "front end), the outcome is in the body (`auth_code`, `auth_msg`) and the user's "
        "config and default characters are made on the first sign-in.",
        responses=OPEN_ERRORS,
        status_code=200,
    )
    async def authenticate_user(
        self, settings: Settings, vault: Vault, defaults: AppDefaults, sign_in: Record[SignIn]
    ) -> SignedIn | SignInOutcome:
        if sign_in.language is None:
            credential = await accounts.check_password(settings, sign_in.username, sign_in.password)
            token, expires_at = await accounts.start_session(settings, credential.user_id)
            return SignedIn(user_id=credential.user_id, token=token, token_expires_at=expires_at)
        try:
            credential = await accounts.check_password(settings, sign_in.username, sign_in.password)
        except AppError as problem:
            code, text = outcomes.failure(problem, sign_in.language)
            return SignInOutcome(user_id="", auth_code=code, auth_msg=text)
        await users.ensure_user(defaults, vault, credential.user_id)
        token, expires_at = await accounts.start_session(settings, credential.user_id)
        return SignInOutcome(
            user_id=credential.user_id,
            auth_code=outcomes.SUCCESS,
            auth_msg=outcomes.message("signed_in", sign_in.language),
            token=token,
            token_expires_at=expires_at,
        )

    @json_body(first=limit_sign_in)
    @post(
        "/update_user_password",
        operation_id="updateUserPassword",
        summary="Change a password (ends every session of that user)",
        responses=OPEN_ERRORS,
        status_code=200,
        opt={ALSO_EMPTY: True},
    )
    async def update_user_password(
        self, settings: Settings, change: Record[PasswordChange]
    ) -> Response[PasswordChanged | None]:
        try:
            credential = await accounts.check_password(settings, change.username, change.password)
        except AppError as problem:
            if change.language is None:
                raise
            code, text = outcomes.failure(problem, change.language)
            return Response(PasswordChanged(auth_code=code, auth_msg=text))
        await accounts.change_password(credential, change.new_password)
        if change.language is None:
            return done()
        text = outcomes.message("password_changed", change.language)
        return Response(PasswordChanged(auth_code=outcomes.SUCCESS, auth_msg=text))

    @json_body
    @post(
        "/create_user",
        operation_id="createUser",
        guards=SIGNED_IN,
        summary="The user's default config and a read-only copy of every default character",
        responses=error_responses(401, 403, 404, 409),
        status_code=200,
    )
    async def create_user(
        self, vault: Vault, defaults: AppDefaults, request: Request, record: Record[UserRef]
    ) -> Response[None]:
        await authorize_user(request, record.user_id)
        await users.create_user(defaults, vault, record.user_id)
        return done()

    @json_body
    @post(
        "/delete_user",
        operation_id="deleteUser",
        guards=SIGNED_IN,
        summary="Remove a user's credential, config, characters and sessions",
        description="The current front end also sends the account's `username` and "
        "`password`, which must belong to `user_id`, and `language`; it gets the outcome "
        "in the body.",
        responses=USER_ERRORS,
        status_code=200,
        opt={ALSO_EMPTY: True},
    )
    async def delete_user(
        self, settings: Settings, request: Request, record: Record[UserDeletion]
    ) -> Response[Deleted | None]:
        await authorize_user(request, record.user_id)
        if record.language is None:
            await users.delete_user(record.user_id)
            return done()
        try:
            if record.username is None or record.password is None:
                raise accounts.SignInRejected("username and password are required")
            credential = await accounts.check_password(settings, record.username, record.password)
            if credential.user_id != record.user_id:
                raise accounts.SignInRejected("the account is not this user's")
        except AppError as problem:
            code, text = outcomes.failure(problem, record.language)
            return Response(Deleted(user_id="", auth_code=code, auth_msg=text))
        await users.delete_user(record.user_id)
        text = outcomes.message("deleted", record.language)
        return Response(Deleted(user_id=record.user_id, auth_code=outcomes.SUCCESS, auth_msg=text))


class OrchestratorController(Controller):
    """What the companion app's orchestrator reads at start-up: not personal data."""

    path = "/api/v1"
    tags = ["companion app"]

    @get(
        "/motion_keywords",
        operation_id="motionKeywords",
        summary="Words the orchestrator turns into an avatar's motions",
    )
    async def motion_keywords(self, defaults: AppDefaults) -> MotionKeywords:
        return MotionKeywords(motion_keywords=defaults.motion_keywords)
