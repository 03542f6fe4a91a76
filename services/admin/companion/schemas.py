"""Wire types of the admin service: the companion app's contract (reference/admin-api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from services.common.web.schemas import (
    END_OF_TEXT,
    PARTICIPANT_PATTERN,
    SHORT_LINE_PATTERN,
    WireStruct,
    worded,
)

# Names the clients may choose from; anything else is refused with 422 naming the field.
# Both releases of the companion app's front end: the current one adds ASR
# `openai_realtime` and `huoshan`, TTS `chatterbox`, providers `minimax` and `sensechat`,
# and model adapters named by provider and role (`openai_agent`, `sensenova_omni_agent`).
ASR_ADAPTERS = ("zoetrope", "openai", "openai_realtime", "softsugar", "huoshan")
TTS_ADAPTERS = (
    "zoetrope",
    "huoshan",
    "huoshan_icl",
    "softsugar",
    "sensenova",
    "elevenlabs",
    "chatterbox",
)
LLM_PROVIDERS = (
    "openai",
    "xai",
    "anthropic",
    "gemini",
    "deepseek",
    "sensenova",
    "minimax",
    "sensechat",
)
MODEL_ROLES = ("agent", "classification", "conversation", "reaction", "memory")
MODEL_ADAPTERS = tuple(
    adapter
    for provider in LLM_PROVIDERS
    for adapter in (
        f"{provider}_omni",
        *(f"{provider}_{role}" for role in MODEL_ROLES),
        *(f"{provider}_omni_{role}" for role in MODEL_ROLES),
    )
)
MODEL_SECTIONS = ("classification", "conversation", "reaction", "memory")
# Provider keys a user config holds (all secret), and its plain settings.
PROVIDER_KEYS = (
    "openai_api_key",
    "xai_api_key",
    "anthropic_api_key",
    "gemini_api_key",
    "deepseek_api_key",
    "sensenova_api_key",
    "sensenova_ak",
    "sensenova_sk",
    "softsugar_app_id",
    "softsugar_app_key",
    "huoshan_app_id",
    "huoshan_token",
    "sense_tts_api_key",
    "nova_tts_api_key",
    "elevenlabs_api_key",
    "minimax_api_key",
    "sensechat_ak",
    "sensechat_sk",
    "zoetrope_tts_api_key",
)
PLAIN_SETTINGS = ("timezone",)

UserId = Annotated[str, Meta(pattern=PARTICIPANT_PATTERN, description="A user's id (uuid4).")]
CharacterId = Annotated[str, Meta(pattern=PARTICIPANT_PATTERN)]
Username = Annotated[str, Meta(pattern=SHORT_LINE_PATTERN)]
Password = Annotated[str, Meta(min_length=8, max_length=256)]
Name = Annotated[str, Meta(pattern=SHORT_LINE_PATTERN)]
Token = Annotated[
    str,
    Meta(
        pattern=worded(
            r"^[A-Za-z0-9._-]{1,64}" + END_OF_TEXT, "1-64 characters: letters, digits and . _ -"
        )
    ),
]
# The screens offer scenes such as "Ground View" and "Cobbled Street".
SceneName = Annotated[str, Meta(pattern=SHORT_LINE_PATTERN, examples=["Ground View"])]
ModelOverride = Annotated[str, Meta(max_length=128)]
Threshold = Annotated[int, Meta(ge=0, le=1000)]
Percent = Annotated[int, Meta(ge=0, le=100)]


# The current release of the front end sends `language` with its auth calls, and reads
# the outcome from the body (`auth_code`, `auth_msg`); the seed's clients send none.
Language = Literal["en", "zh"]
GivenPassword = Annotated[str, Meta(min_length=1, max_length=256)]


class SignIn(WireStruct):
    username: Username
    password: GivenPassword
    language: Language | None = None


class Registration(WireStruct):
    username: Username
    password: Password
    language: Language | None = None


class PasswordChange(WireStruct):
    username: Username
    password: GivenPassword
    new_password: Password
    language: Language | None = None


class UserRef(WireStruct):
    user_id: UserId


class UserDeletion(UserRef):
    """delete_user: the seed's `{user_id}`; the current release adds the account's
    `username` and `password`, which must match, and `language`."""

    username: Username | None = None
    password: GivenPassword | None = None
    language: Language | None = None


class CharacterRef(WireStruct):
    user_id: UserId
    character_id: CharacterId


class DuplicateCharacter(CharacterRef):
    character_name: Name | None = None


class NameUpdate(CharacterRef):
    character_name: Name


class AvatarUpdate(CharacterRef):
    avatar: Token


class SceneUpdate(CharacterRef):
    scene_name: SceneName


class PromptUpdate(CharacterRef):
    prompt: Annotated[str, Meta(max_length=20_000)]


class AsrUpdate(CharacterRef):
    asr_adapter: Literal[ASR_ADAPTERS]  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time


class TtsUpdate(CharacterRef):
    tts_adapter: Literal[TTS_ADAPTERS]  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    voice: Annotated[str, Meta(max_length=128)] = ""
    voice_speed: Annotated[float, Meta(ge=0.25, le=4.0)] = 1.0


def _model_section(section: str) -> type[CharacterRef]:
    """`update_character_<section>`'s body: `<section>_adapter`, `<section>_model_override`."""
    made: type[CharacterRef] = msgspec.defstruct(  # type: ignore[assignment]  # a subclass, as `bases` says
        f"{section.title()}Update",
        [
            (f"{section}_adapter", Literal[MODEL_ADAPTERS]),
            (f"{section}_model_override", ModelOverride, ""),
        ],
        bases=(CharacterRef,),
        kw_only=True,
        module=__name__,
    )
    return made


MODEL_SECTION_UPDATES = {section: _model_section(section) for section in MODEL_SECTIONS}

# update_user_config: every key optional; null or absent leaves it unchanged; a key
# the service does not know is refused by name rather than silently dropped.
if TYPE_CHECKING:  # to a type checker, a UserRef; its keys are made below

    class UserConfigUpdate(UserRef):
        pass

else:
    UserConfigUpdate = msgspec.defstruct(
        "UserConfigUpdate",
        [
            (name, Annotated[str, Meta(max_length=1024)] | None, None)
            for name in (*PROVIDER_KEYS, *PLAIN_SETTINGS)
        ],
        bases=(UserRef,),
        kw_only=True,
        forbid_unknown_fields=True,
        module=__name__,
    )


class CharacterTemplate(WireStruct, forbid_unknown_fields=True):
    """A default character as shipped in defaults/characters/*.json."""

    character_name: Name
    avatar: Token
    scene_name: SceneName
    prompt: Annotated[str, Meta(max_length=20_000)]
    tts_adapter: Literal[TTS_ADAPTERS]  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    voice: str = ""
    voice_speed: Annotated[float, Meta(ge=0.25, le=4.0)] = 1.0
    asr_adapter: Literal[ASR_ADAPTERS] = "zoetrope"  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    classification_adapter: Literal[MODEL_ADAPTERS] = "openai_omni"  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    classification_model_override: ModelOverride = ""
    conversation_adapter: Literal[MODEL_ADAPTERS] = "openai_omni"  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    conversation_model_override: ModelOverride = ""
    reaction_adapter: Literal[MODEL_ADAPTERS] = "openai_omni"  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    reaction_model_override: ModelOverride = ""
    memory_adapter: Literal[MODEL_ADAPTERS] = "openai_omni"  # type: ignore[valid-type]  # a Literal over a tuple of names; msgspec reads it at run time
    memory_model_override: ModelOverride = ""
    acquaintance_threshold: Threshold = 5
    friend_threshold: Threshold = 10
    situationship_threshold: Threshold = 15
    lover_threshold: Threshold = 20
    neutral_threshold: Percent = 50
    happiness_threshold: Percent = 20
    sadness_threshold: Percent = 20
    fear_threshold: Percent = 20
    anger_threshold: Percent = 20
    disgust_threshold: Percent = 20
    surprise_threshold: Percent = 20
    shyness_threshold: Percent = 20

    def __post_init__(self) -> None:
        steps = (
            self.acquaintance_threshold,
            self.friend_threshold,
            self.situationship_threshold,
            self.lover_threshold,
        )
        if list(steps) != sorted(steps):
            raise ValueError("relationship thresholds must rise: acquaintance <= ... <= lover")


class Character(CharacterTemplate, kw_only=True, forbid_unknown_fields=False):
    """A user's character: the whole config `get_character_config` returns."""

    user_id: str
    character_id: str
    create_datatime: str  # the original's spelling, e.g. "2025-11-23 03:08:40,123"
    read_only: bool = False


class UserList(WireStruct):
    user_id_list: list[str]
    user_name_list: list[str] | None


class UserIdReply(WireStruct):
    user_id: str


class SignedIn(WireStruct):
    """authenticate_user's reply: the original's `user_id`, and a token for that user's
    own data (`Authorization: Bearer <token>`), which old clients ignore."""

    user_id: str
    token: str
    token_expires_at: datetime


class AuthOutcome(WireStruct):
    """The current release's auth replies: 200 with the outcome in the body; the front
    end goes on only when `auth_code` is 200 and shows `auth_msg` otherwise."""

    auth_code: int
    auth_msg: str


class Registered(AuthOutcome):
    user_id: str
    confirmation_required: bool = False


class SignInOutcome(AuthOutcome):
    user_id: str
    token: str | None = None
    token_expires_at: datetime | None = None


class PasswordChanged(AuthOutcome):
    confirmation_required: bool = False


class Deleted(AuthOutcome):
    user_id: str


class MissingSecrets(WireStruct):
    """The provider keys a character still needs, by kind (empty lists: none)."""

    llm_requirements: list[str]
    tts_requirements: list[str]
    asr_requirements: list[str]


class MotionKeywords(WireStruct):
    motion_keywords: list[str]


class CharacterList(WireStruct):
    character_id_list: list[str]
    character_name_list: list[str]


class CharacterIdReply(WireStruct):
    character_id: str


class Options(WireStruct):
    options: list[str]


class UserConfigView(WireStruct):
    """A user's config as the API shows it: keys only masked."""

    user_id: str
    keys: dict[str, str]
    settings: dict[str, str | None]


class WhoAmI(WireStruct):
    role: str
    user_id: str | None = None
    # For a token the admin service issued: its studies and its id.
    study_ids: list[str] | None = None
    token_id: str | None = None
    # The name it was issued under ("TA Alice"; a participant's token: their id).
    name: str | None = None
