"""The filters every list, count, stream and summary shares: one participant and a
time window, from validated scalar query parameters (never a client-made query).

Owned by no service: ingest and media read their lists through it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import PathParameter, QueryParameter

from services.common.research.auth import own_scope, principal_of, whose
from services.common.research.privacy import disguise_of
from services.common.research.studies import STUDY_PATTERN
from services.common.web.errors import field_error
from services.common.web.schemas import PARTICIPANT_PATTERN, PARTICIPANT_RULE
from services.common.web.timestamps import parse_instant

ParticipantPath = Annotated[
    str,
    PathParameter(
        pattern=PARTICIPANT_PATTERN, description=f"The participant's id: {PARTICIPANT_RULE}"
    ),
]
StudyPath = Annotated[str, PathParameter(pattern=STUDY_PATTERN, description="The study's id")]
ParticipantFilter = Annotated[
    str | None,
    QueryParameter(
        pattern=PARTICIPANT_PATTERN,
        description=f"Only this participant ({PARTICIPANT_RULE}).",
    ),
]
InstantFilter = Annotated[
    str | None,
    QueryParameter(
        max_length=64,
        description="ISO 8601 (no offset = UTC) or epoch seconds. `since` is inclusive, "
        "`until` exclusive.",
    ),
]
StudyFilter = Annotated[
    str | None,
    QueryParameter(
        pattern=STUDY_PATTERN,
        description="Only this study (`default` for the global tokens' data); one of the "
        "credential's own studies.",
    ),
]
# A query the dependencies below build from validated scalar parameters.
MongoFilter = NamedDependency[dict[str, Any]]


async def provide_span(since: InstantFilter = None, until: InstantFilter = None) -> dict[str, Any]:
    return time_span(since, until)


async def provide_window(
    request: Request[Any, Any, Any],
    span: MongoFilter,
    user_id: ParticipantFilter = None,
    study_id: StudyFilter = None,
) -> dict[str, Any]:
    """The time window, participant and study; a participant token only ever sees its
    own records, a study viewer its studies'."""
    principal = principal_of(request)
    return await participant_window(request, span, whose(principal, user_id), study_id)


async def participant_window(
    request: Request[Any, Any, Any],
    span: dict[str, Any],
    user_id: str | None,
    study_id: str | None = None,
) -> dict[str, Any]:
    """`span` narrowed to what the credential reaches (of `study_id`) and to `user_id`,
    which a viewer of a pseudonymous study names by the pseudonym they were shown."""
    scope = own_scope(principal_of(request), study_id)
    if user_id is None:
        return {**span, **scope}
    disguise = await disguise_of(request)
    if disguise is not None:
        return {**span, **scope, **await disguise.participant_filter(user_id, scope)}
    return {**span, "user_id": user_id, **scope}


def time_span(since: str | None, until: str | None) -> dict[str, Any]:
    """The filter from `since` (inclusive) to `until` (exclusive), so consecutive
    windows never count a record twice."""
    query: dict[str, Any] = {}
    bounds: dict[str, datetime] = {}
    for name, value, operator in (("since", since, "$gte"), ("until", until, "$lt")):
        if value is not None:
            try:
                bounds[operator] = parse_instant(value)
            except ValueError as problem:
                raise field_error(name, str(problem)) from None
    if "$gte" in bounds and "$lt" in bounds and bounds["$gte"] >= bounds["$lt"]:
        raise field_error("until", "must be later than since")
    if bounds:
        query["timestamp"] = bounds
    return query


TIME_AND_PARTICIPANT = {"span": Provide(provide_span), "window": Provide(provide_window)}
