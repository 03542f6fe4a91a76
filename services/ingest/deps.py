"""What ingest's handlers are given besides their path and query: the settings and the
caller (registered once on the app, DEPENDENCIES), and each kind's filters
(a participant and time window, narrowed to what the credential reaches, plus the
kind's own: an emotion, a bounding box), as `Provide` chains into a typed dependency
(services.common.research.filters).
"""

from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter

from services.common.research.deps import CALLER_DEPENDENCIES
from services.common.research.filters import (
    MongoFilter,
)
from services.common.research.privacy import disguise_of
from services.common.web.errors import field_error
from services.common.web.given import Given, from_state
from services.ingest import services
from services.ingest.settings import IngestSettings


async def provide_sentiment_filter(
    window: MongoFilter,
    emotion: Annotated[
        str | None, QueryParameter(max_length=64, description="Only this emotion (any case).")
    ] = None,
) -> dict[str, Any]:
    return {**window, "emotion": emotion.strip().lower()} if emotion is not None else window


async def provide_gps_filter(
    request: Request,
    window: MongoFilter,
    bbox: Annotated[
        str | None,
        QueryParameter(
            max_length=200,
            description="Only fixes inside minLon,minLat,maxLon,maxLat (WGS 84, OGC order; "
            "minLon > maxLon crosses the antimeridian). To a viewer, fixes of studies that "
            "show GPS on a grid are left out (422 when only such studies are reachable).",
        ),
    ] = None,
) -> dict[str, Any]:
    if bbox is None:
        return window
    disguise = await disguise_of(request)
    if disguise is not None:
        boxed = disguise.box_scope(window)
        if boxed is None:
            raise field_error(
                "bbox",
                "is not available here: study "
                + ", ".join(disguise.gridded_studies())
                + " shows viewers GPS rounded to a grid, and a box would reveal finer places",
            )
        window = boxed
    return {**window, **services.bounding_box(bbox)}


Settings = Given[IngestSettings]


DEPENDENCIES = {**CALLER_DEPENDENCIES, "settings": from_state("settings")}
