"""What the companion app's handlers answer besides their bodies: the original's empty
200 after a change, and the statuses each group of routes documents."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response
from litestar.params import FromPath

from services.common.web.openapi import error_responses


def done() -> Response[Any]:
    """The original's reply to a change: 200 with an empty body (labelled as text: an
    empty body is no JSON document)."""
    return Response(content=b"", status_code=200, media_type=MediaType.TEXT)


USER_ERRORS = error_responses(401, 403, 404)
CHARACTER_ERRORS = error_responses(401, 403, 404)
OPEN_ERRORS = error_responses(400, 429)

# A user named in the path (the original spells every route this way).
UserIdPath = FromPath[str]
