"""Checks every service applies to input: JSON bodies, record fields and query parameters.

Problems are reported as `{"field", "reason"}` entries (see `errors.FieldError`), so a
client learns which field is wrong and why, whether it sent one record or a batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.enums import ParamType
from litestar.handlers.http_handlers import HTTPRouteHandler

from services.common.web.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    UnsupportedMediaType,
    explain,
)

T = TypeVar("T")

_AT_PATH = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(
    r"^Object contains unknown field `(?P<field>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$"
)
_MISSING = re.compile(
    r"^Object missing required field `(?P<field>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$"
)


class NonFinite:
    """Stands in for `NaN`/`Infinity`, which Python clients send but JSON does not allow,
    so the field that carries one can be named instead of refusing the whole body."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


# Escapes that make a strict decode fail but that Python's `json` reads as numbers.
_NON_FINITE_LITERALS = (b"NaN", b"Infinity")


# Enough for any byte count or offset (2**63 has 19 digits); more is not a number a
# client means, and Python refuses to convert thousands of digits.
MOST_DIGITS = 19
_ASCII_INTEGER = re.compile(rf"[0-9]{{1,{MOST_DIGITS}}}")


def ascii_integer(text: str | None) -> int | None:
    """A non-negative integer written in ASCII digits (not `١٢`, `²` or 5,000 digits),
    or None."""
    if text is None or not _ASCII_INTEGER.fullmatch(text):
        return None
    return int(text)


def decode_json(body: bytes) -> Any:
    """The JSON value of a body; `NaN`/`Infinity` come back as `NonFinite` markers.

    Raises BadRequest saying what is wrong when the body is not JSON at all: not
    UTF-8 (RFC 8259 §8.1), nested deeper than a decoder can follow, or malformed."""
    try:
        return msgspec.json.decode(body)
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"The body is not valid UTF-8 (byte {error.start}); JSON must be UTF-8"
        ) from None
    except RecursionError:
        raise BadRequest("The body nests arrays or objects too deeply") from None
    except msgspec.DecodeError as strict_error:
        if not any(literal in body for literal in _NON_FINITE_LITERALS):
            raise BadRequest(f"The body is not valid JSON: {strict_error}") from None
        try:
            return json.loads(body, parse_constant=NonFinite)
        except (ValueError, RecursionError):
            raise BadRequest(f"The body is not valid JSON: {strict_error}") from None


def _join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


# Text may hold tab and newline (CRLF too), nothing else below U+0020, no DEL or C1
# controls, and no lone surrogate halves ("\\ud800" decodes to one), which no
# database or file format can store as UTF-8. Nor the explicit text-direction
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they make a name
# read as something else on a TA's screen ("Trojan Source", CVE-2021-42574). The
# marks right-to-left text uses (U+200E, U+200F, U+061C) stay allowed.
_BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_FORBIDDEN_TEXT = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + _BIDI_CONTROLS + r"]|\r(?!\n)"
)
NON_FINITE_REASON = "must be a finite number (NaN and Infinity are not allowed)"


def text_problem(text: str) -> str | None:
    """Why a string may not be stored, or None when it may."""
    found = _FORBIDDEN_TEXT.search(text)
    if found is None:
        return None
    character = found.group()[0]
    if "\ud800" <= character <= "\udfff":
        return f"contains an unpaired surrogate (U+{ord(character):04X}), which is not text"
    if "\u202a" <= character <= "\u202e" or "\u2066" <= character <= "\u2069":
        return (
            f"contains the text-direction control U+{ord(character):04X}, which can make "
            "text read as something else"
        )
    return (
        f"contains the control character U+{ord(character):04X}; only tab and newline are allowed"
    )


def value_problems(value: Any) -> Iterator[dict[str, str]]:
    """Every `NaN`/`Infinity` and every string that may not be stored, in a decoded
    JSON value, by path. Iterative, so any depth the decoder accepted is fine here."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if (reason := text_problem(item)) is not None:
                yield {"field": path or "body", "reason": reason}
        elif isinstance(item, NonFinite) or (isinstance(item, float) and not math.isfinite(item)):
            yield {"field": path or "body", "reason": NON_FINITE_REASON}
        elif isinstance(item, dict):
            for key, member in reversed(item.items()):
                field = _join(path, key)
                if (reason := text_problem(key)) is not None:
                    yield {"field": field, "reason": f"(the name) {reason}"}
                stack.append((field, member))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append((_join(path, index), item[index]))


def problem_from_validation_error(error: msgspec.ValidationError) -> dict[str, str]:
    """msgspec's message as `{"field", "reason"}`."""
    message = str(error)
    if missing := _MISSING.match(message):
        field = _join((missing["path"] or "").lstrip("."), missing["field"])
        return {"field": field, "reason": "is required"}
    if unknown := _UNKNOWN.match(message):
        field = _join((unknown["path"] or "").lstrip("."), unknown["field"])
        return {"field": field, "reason": "is not a field of this request"}
    if located := _AT_PATH.match(message):
        return {
            "field": located["path"].lstrip(".") or "body",
            "reason": explain(located["reason"]),
        }
    return {"field": "body", "reason": message}


def convert_record(value: Any, record_type: type[T]) -> T:
    """One decoded JSON object as `record_type`, strictly typed; FieldError otherwise."""
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else type(value).__name__
        raise FieldError([{"field": "body", "reason": f"must be a JSON object, got {kind}"}])
    if problems := list(value_problems(value)):
        raise FieldError(problems)
    try:
        return msgspec.convert(value, record_type, strict=True)
    except msgspec.ValidationError as error:
        raise FieldError([problem_from_validation_error(error)]) from None


# A handler's `opt` key for pages people open from links and bookmarks, which may carry
# parameters of their own (utm_source=...): those are ignored instead of refused.
ANY_QUERY = "ignores_unknown_query_parameters"


# What each handler declares, found once: by its function and paths, which a handler
# and any copy Litestar makes of it share.
Names = frozenset[str]
_DECLARED: dict[tuple[Any, Names, Names], tuple[Names, Names]] = {}


def _declared_query_parameters(
    handler: HTTPRouteHandler, path_parameters: frozenset[str]
) -> tuple[Names, Names]:
    """(every query name the handler and its dependencies declare, those that may repeat)."""
    key = (handler.fn, frozenset(handler.paths), path_parameters)
    if (declared := _DECLARED.get(key)) is None:
        kwargs_model = handler.create_kwargs_model(dict.fromkeys(path_parameters))  # type: ignore[arg-type]  # only the names matter here
        query = [p for p in kwargs_model.expected_query_params if p.param_type is ParamType.QUERY]
        declared = _DECLARED[key] = (
            frozenset(p.field_alias for p in query),
            frozenset(p.field_alias for p in query if p.is_sequence),
        )
    return declared


async def reject_unknown_query_parameters(request: Request[Any, Any, Any]) -> None:
    """Every HTTP handler's `before_request` hook: query parameters are scalars the
    handler declares, nothing else.

    This keeps operator-shaped input (`user_id[$ne]=`, `$where=`) and typos from being
    silently ignored, and a parameter given twice from being half-read. A hook rather
    than a guard: Litestar copies the handler for each guard of each request (8 µs), and
    a hook runs after the guards, so a caller without a credential learns nothing of
    the parameters."""
    handler = request.route_handler
    if not isinstance(handler, HTTPRouteHandler) or handler.opt.get(ANY_QUERY):
        return
    path_parameters = frozenset(request.scope.get("path_params", {}))
    known, repeatable = _declared_query_parameters(handler, path_parameters)
    problems = []
    for name in dict.fromkeys(request.query_params.keys()):
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            problems.append(
                {"field": name, "reason": f"is not a query parameter here (known: {expected})"}
            )
        elif name not in repeatable and len(request.query_params.getall(name)) > 1:
            problems.append({"field": name, "reason": "must be given at most once"})
    if problems:
        raise FieldError([{**p, "source": "query"} for p in problems])


# After refusing a body, read on (and discard) at most this much of the rest, so that
# clients which send the whole body before reading still see the answer.
DRAIN_BYTES = 64 * 1024 * 1024


async def drain(chunks: AsyncIterator[bytes], budget: int = DRAIN_BYTES) -> None:
    """Reads and drops the rest of a refused body, up to `budget` bytes."""
    with contextlib.suppress(Exception):
        async for chunk in chunks:
            budget -= len(chunk)
            if budget <= 0:
                return


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it passes `limit` bytes."""
    too_large = PayloadTooLarge(
        f"The request body is larger than the limit of {limit} bytes", extra={"limit": limit}
    )
    stream = request.stream()
    declared = ascii_integer(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        await drain(stream)
        raise too_large
    chunks: list[bytes] = []
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            await drain(stream)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or a `+json` type (RFC 6839), parameters aside."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def require_json(request: Request[Any, Any, Any]) -> None:
    """415 for a body labelled as something other than JSON (`text/plain`, a form):
    what a client labels wrongly is rarely what it meant to send. An unlabelled body
    is read as JSON, as the seed's clients expect."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"Send the body as JSON with Content-Type: application/json, not {content_type!r}"
        )


async def read_record(request: Request[Any, Any, Any], record_type: type[T]) -> T:
    """The request's JSON body as `record_type`: strict types, and every problem named
    (also NaN and Infinity, which Litestar's own decoding would refuse wholesale)."""
    require_json(request)
    return convert_record(decode_json(await request.body()), record_type)
