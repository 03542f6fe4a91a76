"""Single posts: one stored as its own request, and posts the gateway relays together,
each read with its own credential and answered as it would have been alone
(services.gateway.proxy.coalescing, docs/adr/0008)."""

import msgspec
from litestar import Request

from services.common.research.auth import study_of, writer_in, written_as
from services.common.web.errors import BadRequest, error_response, field_error
from services.common.web.schemas import (
    RELAYED_CREDENTIAL_BYTES,
    RELAYED_POST_BYTES,
    RELAYED_POSTS_MOST,
    PostAnswer,
    Principal,
    RelayedPost,
)
from services.common.web.validation import decode_json
from services.ingest import services
from services.ingest.kinds import TelemetryKind
from services.ingest.schemas import Created

# One relayed post's share of the combined body: its body, its credential, the JSON
# around them.
RELAYED_ENTRY_BYTES = RELAYED_POST_BYTES + RELAYED_CREDENTIAL_BYTES + 64


def relayed_posts(body: bytes) -> list[RelayedPost]:
    """The posts relayed together: a JSON array of at most RELAYED_POSTS_MOST, each with
    its own credential and its body, read later exactly as its own request would be."""
    try:
        posts = msgspec.json.decode(body, type=list[RelayedPost])
    except msgspec.DecodeError as error:
        raise BadRequest(f"The body is not a JSON array of posts: {error}") from None
    if not posts or len(posts) > RELAYED_POSTS_MOST:
        raise field_error("body", f"must hold 1 to {RELAYED_POSTS_MOST} posts, not {len(posts)}")
    return posts


async def store_one(
    kind: TelemetryKind, request: Request, body: bytes, principal: Principal
) -> Created:
    """What one post stores, and its answer: the record as its writer may store it."""
    raw = written_as(principal, decode_json(body))
    document = await services.insert_one(
        kind,
        request.app.state.inserters[kind.key],
        raw,
        request.app.state.settings.max_ahead,
        study_of(principal),
    )
    return Created(
        message=kind.created_message, id=str(document["_id"]), record=kind.to_wire(document)
    )


async def answer_alone(kind: TelemetryKind, request: Request, post: RelayedPost) -> PostAnswer:
    """One relayed post answered as its own request would have been, refusal or not:
    its own credential checked as the single route's guard checks it."""
    try:
        principal = await writer_in(request, post.authorization)
        created = await store_one(kind, request, bytes(post.body), principal)
    except Exception as exc:  # each post's refusal is its own, as if it came alone
        refusal = error_response(request, exc)
        return PostAnswer(
            status=refusal.status_code or 500,  # error_response always sets one
            body=msgspec.Raw(msgspec.json.encode(refusal.content)),
            headers=dict(refusal.headers),
        )
    return PostAnswer(status=201, body=msgspec.Raw(msgspec.json.encode(created)))
