"""Decoding bodies and naming the field of every problem."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import pytest
from bson import ObjectId
from litestar.testing import TestClient

from services.common.web import validation
from services.common.web.errors import BadRequest, FieldError
from services.common.web.pagination import Order, TimeCursor, decode_cursor, encode_cursor
from services.common.web.schemas import ParticipantId
from services.common.web.validation import (
    NonFinite,
    convert_record,
    decode_json,
    text_problem,
    value_problems,
)
from tests.common.apps import make_app
from tests.support import bearer


class Record(msgspec.Struct, kw_only=True):
    user_id: ParticipantId
    value: Annotated[float, msgspec.Meta(ge=0, le=1)]
    tags: list[str] = []


def test_json_with_nan_names_where_it_is() -> None:
    decoded = decode_json(b'{"a": [1, NaN], "b": {"c": -Infinity}}')
    assert isinstance(decoded["a"][1], NonFinite)
    with pytest.raises(FieldError) as raised:
        convert_record(decoded, Record)
    assert [e["field"] for e in raised.value.errors] == ["a[1]", "b.c"]


def test_invalid_json_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        decode_json(b'{"a": ')


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ({"value": 0.5}, "user_id", "is required"),
        ({"user_id": "P1", "value": 2}, "value", "must be at most 1"),
        ({"user_id": "P1", "value": "0.5"}, "value", "must be a number, not text"),
        ({"user_id": "P 1", "value": 0.5}, "user_id", "must be 1-128 characters"),
        ({"user_id": "P1", "value": 0.5, "tags": ["a", 3]}, "tags[1]", "must be text, not a whole"),
        ([], "body", "must be a JSON object, got an array"),
    ],
)
def test_problems_name_the_field(value: object, field: str, reason: str) -> None:
    with pytest.raises(FieldError) as raised:
        convert_record(value, Record)
    assert raised.value.errors[0]["field"] == field
    assert raised.value.errors[0]["reason"].startswith(reason)


def test_cursors_round_trip_and_refuse_tampering() -> None:
    record_id = ObjectId()
    instant = datetime(2025, 11, 23, 3, 8, 40, 123000, tzinfo=UTC)
    token = TimeCursor.after(Order.DESC, instant, record_id).encode()
    cursor = TimeCursor.decode(token, Order.DESC)
    assert cursor.keyset("timestamp") == {
        "$or": [
            {"timestamp": {"$lt": instant}},
            {"timestamp": instant, "_id": {"$lt": record_id}},
        ]
    }
    for forged in (
        "x",
        token[:-3],
        encode_cursor(("desc", "soon", str(record_id))),
        encode_cursor(("desc", 1, {"$ne": None})),
    ):
        with pytest.raises(FieldError):
            TimeCursor.decode(forged, Order.DESC)
    with pytest.raises(FieldError):
        TimeCursor.decode(token, Order.ASC)
    assert decode_cursor(encode_cursor(("P7",)), tuple[str]) == ("P7",)


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ("plain words, ümlauts and 中文", True),
        ("tab\there, new\nline, windows\r\nline", True),
        ("nul\x00", False),
        ("bell\x07", False),
        ("escape\x1b[31m", False),
        ("lone carriage\rreturn", False),
        ("delete\x7f", False),
        ("c1 control\x85", False),
        ("surrogate \ud800 half", False),
    ],
)
def test_text_may_hold_tab_and_newline_but_no_other_control(text: str, allowed: bool) -> None:
    assert (text_problem(text) is None) is allowed


def test_every_text_problem_is_named_by_its_path_at_any_depth() -> None:
    deep: object = "bad\x00"
    for _ in range(900):
        deep = [deep]
    problems = {
        p["field"]: p["reason"] for p in value_problems({"ok": "fine", "deep": deep, "k\x01ey": 1})
    }
    assert set(problems) == {"deep" + "[0]" * 900, "k\x01ey"}
    assert "U+0000" in problems["deep" + "[0]" * 900]
    assert "the name" in problems["k\x01ey"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"a": "\xff"}', "UTF-8"),
        (b"[" * 100_000, "too deeply"),
        (b'{"a": "\\ud800"}', "not valid JSON"),
        (b'{"a": NaN', "not valid JSON"),
    ],
)
def test_undecodable_bodies_say_why(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest) as raised:
        decode_json(body)
    assert words in raised.value.error


def test_the_query_check_learns_each_route_once_and_still_refuses(tmp_path: Path) -> None:
    """Litestar gives each guard a fresh copy of the handler; the check's memory of which
    names a route declares must not grow with every request (a leak in every service)."""
    with TestClient(make_app(tmp_path)) as client:
        for _ in range(30):
            assert client.get("/readings/x", headers=bearer("viewer")).status_code == 404
        learned = len(validation._DECLARED)
        for _ in range(30):
            assert client.get("/readings/x", headers=bearer("viewer")).status_code == 404
        assert len(validation._DECLARED) == learned
        refused = client.get("/readings/x?user_id[$ne]=a", headers=bearer("viewer"))
        assert refused.status_code == 422
        assert refused.json()["detail"]["errors"][0]["field"] == "user_id[$ne]"
