"""The value types records are validated with: ranges and meanings that the services
check on the way in and the codebook (services.common.research.codebook) documents on the way
out, so the two cannot drift.

Owned by no service: ingest and media check records with them, the codebook documents
them.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

Label = Annotated[str, Meta(min_length=1, max_length=64)]
Emotion = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="A free label such as happy, sad, calm; stored trimmed and lower-case.",
    ),
]
Intensity = Annotated[float, Meta(ge=0.0, le=1.0, description="From 0 (faint) to 1 (intense).")]
Note = Annotated[str, Meta(max_length=2000)]
Latitude = Annotated[float, Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Meta(ge=-180.0, le=180.0)]
Metres = Annotated[float, Meta(ge=-1000.0, le=100_000.0)]
Accuracy = Annotated[float, Meta(ge=0.0, le=100_000.0, description="Metres.")]
# iOS reports -1 for an unknown speed or heading: accepted, stored as null.
Speed = Annotated[float, Meta(ge=-1.0, le=1000.0, description="m/s; negative means unknown.")]
Heading = Annotated[float, Meta(ge=-1.0, le=360.0, description="Degrees; negative = unknown.")]
PlaceName = Annotated[str, Meta(max_length=256)]
