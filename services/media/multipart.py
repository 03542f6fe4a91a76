"""A multipart/form-data body, streamed: its parts one after another, a file part's
bytes as they arrive. It reads from any async iterator of byte chunks (no request), so
memory stays flat whatever the size of the file.

    async for part in parts(chunks, content_type):
        if part.filename is None:
            text = await part.text()
        else:
            async for data in part.data(): ...

Each part must be read (or skipped) before the next one comes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:  # python-multipart declares its callbacks' types for checkers only
    from python_multipart.multipart import MultipartCallbacks

from services.common.web.errors import BadRequest, UnsupportedMediaType, field_error

MAX_FIELD_BYTES = 10 * 1024
MAX_PARTS = 20


@dataclass
class _Events:
    """python-multipart calls back synchronously; this queues what it saw so that the
    parts can be handed out with awaits between chunks."""

    queue: list[tuple[str, Any]] = field(default_factory=list)
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _headers: dict[str, str] = field(default_factory=dict)

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.queue.append(("headers", dict(self._headers))),
            "on_part_data": lambda d, s, e: self.queue.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.queue.append(("end", None)),
        }

    def _header_end(self) -> None:
        # Part headers stay bytes-as-latin-1, as python-multipart's parser of their
        # options expects; names and file names are decoded as UTF-8 from those.
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()


class Part:
    """One part: a text field (`filename` None) or a file."""

    def __init__(self, name: str, filename: str | None, body: AsyncIterator[bytes]) -> None:
        self.name = name
        self.filename = filename
        self._body = body
        self.read = False

    async def data(self) -> AsyncIterator[bytes]:
        self.read = True
        async for piece in self._body:
            yield piece

    async def text(self) -> str:
        value = bytearray()
        async for piece in self.data():
            value += piece
            if len(value) > MAX_FIELD_BYTES:
                raise field_error(self.name, f"is longer than {MAX_FIELD_BYTES} bytes")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise field_error(self.name, "is not valid UTF-8 text") from None


def boundary_of(content_type: str) -> bytes:
    """The form's boundary; 415 (or 422 for a form without a file) otherwise."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind == b"application/x-www-form-urlencoded":
        # A form without a file part is sent this way by most clients.
        raise field_error("video", "is required: send a multipart/form-data form with it")
    if kind != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType(
            "Send the upload as multipart/form-data with the video in the field `video` "
            "(or the bytes alone to /api/vlogs/upload/raw)"
        )
    return boundary


async def parts(chunks: AsyncIterator[bytes], content_type: str) -> AsyncIterator[Part]:
    """The parts of the form in `chunks`; a malformed form is 400."""
    events = _Events()
    parser = MultipartParser(boundary_of(content_type), events.callbacks())
    source = aiter(chunks)
    finished = False
    count = 0

    async def next_events() -> bool:
        """Feeds the parser until it has something to say; False at the end."""
        nonlocal finished
        while not events.queue:
            if finished:
                return False
            chunk = await anext(source, None)
            if chunk is None:
                finished = True
            _feed(parser, chunk)
        return True

    async def body() -> AsyncIterator[bytes]:
        while await next_events():
            kind, value = events.queue.pop(0)
            if kind == "end":
                return
            if kind == "data":
                yield value

    while await next_events():
        kind, value = events.queue.pop(0)
        if kind != "headers":
            continue  # the preamble, or what a part's reader left
        count += 1
        if count > MAX_PARTS:
            raise BadRequest(f"The form has more than {MAX_PARTS} parts")
        part = Part(*_part_name(value), body())
        yield part
        if not part.read:
            async for _ in part.data():
                pass


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    """One chunk into the parser (None: the end); a malformed form is the client's
    problem (400), whatever part of it is wrong: boundary, part headers, their size."""
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except MultipartParseError as problem:
        raise BadRequest(f"The multipart/form-data body is malformed: {problem}") from None


def _part_name(headers: dict[str, str]) -> tuple[str, str | None]:
    _, options = parse_options_header(headers.get("content-disposition", ""))
    try:
        name = options.get(b"name", b"").decode("utf-8")
        filename = options.get(b"filename")
        return name, filename.decode("utf-8") if filename is not None else None
    except UnicodeDecodeError:
        raise BadRequest("A part's name or file name is not valid UTF-8") from None
