"""How a download leaves the gateway: started only once its first piece is read (a
refusal is still an error response), named as an attachment, and a large one in its
turn (services.gateway.exports.turns)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar.response import Stream

from services.common.web.schemas import utc_now
from services.gateway.exports.turns import ExportTurns


async def started(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Reads the first piece before the response starts, so that a refusal or a down
    service still becomes a proper error response instead of a broken download."""
    try:
        first = await anext(pieces)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for piece in pieces:
            yield piece

    return rest()


async def in_turn(turns: ExportTurns, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A large export (ZIP, Parquet) started in its turn."""
    await turns.take()
    try:
        first_read = await started(pieces)
    except BaseException:
        turns.give_back()
        raise
    return turns.holding(first_read)


def named(name: str) -> dict[str, str]:
    """The headers of a download saved as `name` (RFC 6266), never sniffed as a page."""
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Content-Type-Options": "nosniff",
    }


def attachment(name: str, media_type: str, pieces: AsyncIterator[bytes], **headers: str) -> Stream:
    return Stream(pieces, media_type=media_type, headers={**named(name), **headers})


def stamp() -> str:
    """The time in a download's name."""
    return utc_now().strftime("%Y%m%d-%H%M%S")
