"""Wire types shared by every service. Handlers take and return msgspec Structs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

# Participant ids end up in query strings, file names of exports and log lines: a
# conservative alphabet keeps all three safe and makes operator strings such as
# `{"$ne": ""}` invalid on sight.
# Patterns end in END_OF_TEXT, not `$`: msgspec and Litestar match with `re.search`,
# where `$` also matches before a final newline. (The lookahead works in ECMAScript
# too, so the OpenAPI documents stay valid.)
END_OF_TEXT = r"(?![\s\S])"
# How error messages describe each pattern: msgspec and Litestar would quote the
# regex, and a person reads these (the front ends show them).
PATTERN_RULES: dict[str, str] = {}


def worded(pattern: str, rule: str) -> str:
    """`pattern`, whose failures error messages give as `must be <rule>`
    (services.common.web.errors.explain). Every pattern of a wire type is declared so."""
    PATTERN_RULES[pattern] = rule
    return pattern


PARTICIPANT_RULE = (
    "1-128 characters: letters, digits and . _ @ : + - (starting with a letter or digit)"
)
PARTICIPANT_PATTERN = worded(
    r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}" + END_OF_TEXT, PARTICIPANT_RULE
)
ParticipantId = Annotated[
    str,
    msgspec.Meta(
        pattern=PARTICIPANT_PATTERN,
        description=f"The participant's id: {PARTICIPANT_RULE}.",
        examples=["P001"],
    ),
]
# A client-generated id makes a record idempotent: printable ASCII, no spaces.
CLIENT_ID_RULE = "1-128 printable ASCII characters without spaces"
CLIENT_ID_PATTERN = worded(r"^[!-~]{1,128}" + END_OF_TEXT, CLIENT_ID_RULE)
ClientId = Annotated[
    str,
    msgspec.Meta(
        pattern=CLIENT_ID_PATTERN,
        description="An id the phone gives the record; a resent record with the same "
        f"participant and client id is stored once. {CLIENT_ID_RULE}.",
        examples=["5f1c2a9e-0d3b-4c55-9a51-6a1f0e7d2b10"],
    ),
]
# Free text of one line: names, titles.
ONE_LINE_RULE = "without control characters (such as line breaks)"
ONE_LINE_PATTERN = worded(r"^[^\x00-\x1f\x7f]+" + END_OF_TEXT, f"text {ONE_LINE_RULE}")
SHORT_LINE_PATTERN = worded(
    r"^[^\x00-\x1f\x7f]{1,64}" + END_OF_TEXT, f"1-64 characters {ONE_LINE_RULE}"
)


class WireStruct(msgspec.Struct, kw_only=True):
    """Base of every request and response body."""


class Liveness(WireStruct):
    status: str
    service: str
    timestamp: datetime


class Readiness(WireStruct):
    status: str
    service: str
    database: str
    timestamp: datetime


class Principal(WireStruct, frozen=True):  # type: ignore[misc]  # msgspec allows it; mypy applies dataclass rules
    """Who a request acts for: a role; for per-user and participant tokens the user it
    may reach; for issued tokens their studies and id (the global tokens have none)."""

    role: str
    user_id: str | None = None
    study_ids: tuple[str, ...] | None = None
    token_id: str | None = None
    # An issued token's name ("TA Alice"), where the lookup gives it (the gateway's).
    token_name: str | None = None


# Single posts relayed together (services.gateway.proxy.coalescing): at most this many in
# one request, each body at most this large. A phone's record is a few hundred bytes.
RELAYED_POSTS_MOST = 64
RELAYED_POST_BYTES = 16 * 1024
# Each relayed post carries its own Authorization header, at most this long (a longer
# one goes alone). An issued token's header is about 50 bytes.
RELAYED_CREDENTIAL_BYTES = 512


class RelayedPost(msgspec.Struct, frozen=True):
    """One single post relayed together with others: its credential and its body."""

    authorization: str
    body: msgspec.Raw


class PostAnswer(WireStruct):
    """One of several posts relayed together, answered as its own request would be:
    its status, the headers that answer adds, and its JSON body as it was encoded."""

    status: int
    body: msgspec.Raw
    headers: dict[str, str] = {}


class PostAnswers(WireStruct):
    """The answers to posts relayed together, in the order they were sent."""

    answers: list[PostAnswer]


def utc_now() -> datetime:
    return datetime.now(UTC)
