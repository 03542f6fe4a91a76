"""Sending a stored video: single byte ranges (RFC 9110 §14), strong ETags from the
sha256 with 304 and If-Range, and a Content-Disposition that keeps any file name
(RFC 6266 with RFC 5987 encoding). The bytes stream from storage as they are read."""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import quote

from bson import ObjectId
from litestar import Request, Response
from litestar.datastructures import CacheControlHeader
from litestar.response import Stream

from services.common.web.errors import RangeNotSatisfiable

SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# The bytes of a vlog never change (its sha256 is a strong validator): the viewer's
# browser may keep them, so seeking back in a video fetches nothing twice. A handler's
# own `cache_control`, in place of every answer's no-store (services.common.web.app).
STORED_BYTES_CACHING = CacheControlHeader(private=True, max_age=86400)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte a single-range `Range` header asks for, None for the
    whole file (no header, or several ranges, which RFC 9110 lets a server ignore);
    416 when it lies past the end."""
    if not header:
        return None
    match = SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The range lies outside the file of {size} bytes",
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback and the exact name in RFC 5987 encoding."""
    # The fallback keeps letters readable: "été" becomes "ete", not "___".
    ascii_only = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = ascii_only.replace('"', "_").strip() or "video"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def send_stored(
    request: Request,
    *,
    storage_id: ObjectId,
    size: int,
    etag: str,
    content_type: str,
    disposition: str,
) -> Response[Any]:
    """The stored bytes with HTTP caching and single-range support (206/304/416)."""
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": disposition,
        "X-Content-Type-Options": "nosniff",
    }
    if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(b"", status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is stale: send everything
    span = byte_range(wanted, size)
    first, last = span if span is not None else (0, size - 1)
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    return Stream(
        request.app.state.storage.read_range(storage_id, first, last),
        status_code=206 if span is not None else 200,
        media_type=content_type,
        headers=headers,
    )
