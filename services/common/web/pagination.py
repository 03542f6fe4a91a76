"""Keyset pagination with opaque cursors, shared by every list endpoint.

A page is sorted by (time, _id), so records with the same time keep a stable order
and a walk visits each record exactly once even while new ones arrive. The cursor
carries the sort order and the last (time, _id) seen, base64url-encoded; clients
treat it as opaque. The next page is announced in an RFC 8288 `Link` header (and
`X-Next-Cursor`), which keeps the seed's bare JSON array bodies intact.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import msgspec
from bson import ObjectId
from litestar.params import QueryParameter

from services.common.web.errors import field_error

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

PageSize = Annotated[
    int,
    QueryParameter(
        ge=1,
        le=MAX_PAGE_SIZE,
        description=f"Records per page (at most {MAX_PAGE_SIZE}); follow the `Link` header "
        "for the next page.",
    ),
]
CursorParameter = Annotated[
    str | None,
    QueryParameter(
        max_length=200,
        description="Where the page starts: the value of the previous page's "
        "`X-Next-Cursor` header (also in its `Link` header).",
    ),
]
INVALID_CURSOR = "is not a cursor this API handed out (take it from the X-Next-Cursor header)"

T = TypeVar("T")


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


OrderParameter = Annotated[
    Order, QueryParameter(description="By time: `desc` (newest first, the default) or `asc`.")
]


def encode_cursor(values: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).rstrip(b"=").decode()


def decode_cursor(token: str, shape: type[T]) -> T:
    """The values `encode_cursor` packed, as `shape` (a tuple type); 422 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return msgspec.json.decode(raw, type=shape, strict=True)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise field_error("cursor", INVALID_CURSOR) from None


class TimeCursor(msgspec.Struct, array_like=True, frozen=True):
    """Position after the record at (`epoch_ms`, `record_id`) in `order`."""

    order: Order
    epoch_ms: int
    record_id: str

    @classmethod
    def after(cls, order: Order, instant: datetime, record_id: ObjectId) -> TimeCursor:
        epoch_ms = round(instant.timestamp() * 1000)
        return cls(order, epoch_ms, str(record_id))

    def encode(self) -> str:
        return encode_cursor(msgspec.structs.astuple(self))

    @classmethod
    def decode(cls, token: str, order: Order) -> TimeCursor:
        cursor = decode_cursor(token, cls)
        if cursor.order != order or not ObjectId.is_valid(cursor.record_id):
            raise field_error("cursor", f"{INVALID_CURSOR}, for order={order.value}")
        return cursor

    def keyset(self, time_field: str) -> dict[str, Any]:
        """The filter that selects the records after this position."""
        instant = datetime.fromtimestamp(self.epoch_ms / 1000, UTC)
        beyond = "$gt" if self.order is Order.ASC else "$lt"
        return {
            "$or": [
                {time_field: {beyond: instant}},
                {time_field: instant, "_id": {beyond: ObjectId(self.record_id)}},
            ]
        }


def next_page_headers(path: str, query: dict[str, Any], cursor: str | None) -> dict[str, str]:
    """`Link: <...>; rel="next"` and `X-Next-Cursor` when there is a next page.

    The link is relative, so it stays right behind the gateway or any other proxy."""
    if cursor is None:
        return {}
    params = {k: v for k, v in query.items() if v is not None and k != "cursor"}
    params["cursor"] = cursor
    return {"Link": f'<{path}?{urlencode(params)}>; rel="next"', "X-Next-Cursor": cursor}


def with_next_cursor(
    documents: list[dict[str, Any]], order: Order, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page from `limit + 1` documents read: the first `limit`, and the cursor after
    the last of them when the extra one shows that more follow."""
    if len(documents) <= limit:
        return documents, None
    documents = documents[:limit]
    last = documents[-1]
    return documents, TimeCursor.after(order, last["timestamp"], last["_id"]).encode()
