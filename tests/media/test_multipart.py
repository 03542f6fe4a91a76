"""The streaming multipart parser on its own: any async iterator of chunks, however the
body is cut, gives the same parts; what it refuses names why."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from services.common.web.errors import BadRequest, FieldError, UnsupportedMediaType
from services.media import multipart

BOUNDARY = "----emogo-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


async def cut(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def read_all(body: bytes, size: int, content_type: str = CONTENT_TYPE) -> list[tuple]:
    seen = []
    async for part in multipart.parts(cut(body, size), content_type):
        if part.filename is None:
            seen.append((part.name, None, await part.text()))
        else:
            seen.append((part.name, part.filename, b"".join([d async for d in part.data()])))
    return seen


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_parts_come_out_whole_however_the_body_is_cut(size: int) -> None:
    video = os.urandom(50_000) + f"\r\n--{BOUNDARY}x".encode()  # looks like a boundary
    body = form(
        ("title", None, "Morning, café".encode()),
        ("video", "clip.mp4", video),
        ("user_id", None, b"P001"),
    )
    assert asyncio.run(read_all(body, size)) == [
        ("title", None, "Morning, café"),
        ("video", "clip.mp4", video),
        ("user_id", None, "P001"),
    ]


def test_a_part_left_unread_is_skipped() -> None:
    async def names() -> list[str]:
        body = form(("a", None, b"1"), ("video", "v.mp4", b"x" * 5000), ("b", None, b"2"))
        return [part.name async for part in multipart.parts(cut(body, 100), CONTENT_TYPE)]

    assert asyncio.run(names()) == ["a", "video", "b"]


@pytest.mark.parametrize(
    ("body", "content_type", "refusal", "words"),
    [
        (form(*[(f"f{n}", None, b"x") for n in range(21)]), CONTENT_TYPE, BadRequest, "parts"),
        (form(("title", None, b"x" * 20_000)), CONTENT_TYPE, FieldError, "title"),
        (form(("title", None, b"\xff\xfe")), CONTENT_TYPE, FieldError, "UTF-8"),
        (b"--not-the-boundary\r\n\r\n", CONTENT_TYPE, BadRequest, "malformed"),
        (b"{}", "application/json", UnsupportedMediaType, "multipart/form-data"),
        (b"a=b", "application/x-www-form-urlencoded", FieldError, "video"),
    ],
)
def test_what_is_refused_says_why(
    body: bytes, content_type: str, refusal: type[Exception], words: str
) -> None:
    with pytest.raises(refusal) as raised:
        asyncio.run(read_all(body, 10, content_type))
    assert words in str(raised.value) + str(getattr(raised.value, "errors", ""))
