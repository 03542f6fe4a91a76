"""The pure functions every route relies on, case by case, without a process or a
database: byte ranges (RFC 9110 §14), download names (RFC 6266/5987), spreadsheet
safety (OWASP CSV injection), time spans, batch splitting, bounding boxes, the GPS
grid and local days. Their routes keep one or two HTTP cases each."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.common.research.filters import time_span
from services.common.research.grid import coarsened, grid_steps
from services.common.research.localdays import local_day_and_hour
from services.common.web.errors import FieldError, RangeNotSatisfiable, UnsupportedMediaType
from services.gateway.exports.formats import spreadsheet_safe
from services.ingest.services import bounding_box, split_batch
from services.media.delivery import byte_range, content_disposition


@pytest.mark.parametrize(
    ("header", "size", "wanted"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=90-500", 100, (90, 99)),  # past the end: up to the last byte
        ("bytes=-10", 100, (90, 99)),  # the last ten
        ("bytes=-500", 100, (0, 99)),
        ("bytes = 0 - 9", 100, (0, 9)),
        ("bytes=0-1,5-6", 100, None),  # several ranges may be ignored
        ("items=0-9", 100, None),
        ("bytes=-", 100, None),
    ],
)
def test_byte_range(header: str | None, size: int, wanted: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == wanted


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=9-3"])
def test_an_unsatisfiable_range_is_416_with_the_size(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        byte_range(header, 100)
    assert refused.value.headers["Content-Range"] == "bytes */100"


@pytest.mark.parametrize(
    ("filename", "fallback", "encoded"),
    [
        ("walk.mp4", "walk.mp4", "walk.mp4"),
        ("été.mp4", "ete.mp4", "%C3%A9t%C3%A9.mp4"),
        ('say "hi".mp4', "say _hi_.mp4", "say%20%22hi%22.mp4"),
        ("日記.mp4", ".mp4", "%E6%97%A5%E8%A8%98.mp4"),
        ("日記", "video", "%E6%97%A5%E8%A8%98"),
    ],
)
def test_content_disposition(filename: str, fallback: str, encoded: str) -> None:
    assert content_disposition("attachment", filename) == (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+33 6", "'+33 6"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("calm", "calm"),
        ("a=b", "a=b"),
        (-2, -2),  # numbers are numbers
        (None, None),
    ],
)
def test_spreadsheet_safe(value: object, shown: object) -> None:
    assert spreadsheet_safe(value) == shown


def test_time_span_is_half_open_and_named_in_its_errors() -> None:
    span = time_span("2025-11-20T00:00:00Z", "2025-11-21T00:00:00Z")["timestamp"]
    assert span["$gte"] == datetime(2025, 11, 20, tzinfo=UTC)
    assert span["$lt"] == datetime(2025, 11, 21, tzinfo=UTC)
    assert time_span(None, None) == {}
    with pytest.raises(FieldError) as refused:
        time_span("2025-11-21T00:00:00Z", "2025-11-20T00:00:00Z")
    assert refused.value.errors[0]["field"] == "until"
    with pytest.raises(FieldError) as refused:
        time_span("yesterday", None)
    assert refused.value.errors[0]["field"] == "since"


def test_a_batch_is_a_json_array_or_ndjson_and_a_bad_line_is_refused_alone() -> None:
    assert split_batch(b'[{"a": 1}, {"a": 2}]', "application/json", 10) == [{"a": 1}, {"a": 2}]
    lines = split_batch(b'{"a": 1}\n\nnot json\n{"a": 3}\n', "application/x-ndjson", 10)
    assert lines[0] == {"a": 1}
    assert isinstance(lines[1], FieldError)
    assert "line 3" in lines[1].errors[0]["reason"]
    assert lines[2] == {"a": 3}
    with pytest.raises(FieldError):
        split_batch(b"[" + b'{"a": 1},' * 10 + b'{"a": 1}]', "application/json", 10)
    with pytest.raises(UnsupportedMediaType):
        split_batch(b"[]", "text/csv", 10)


def test_a_bounding_box_may_cross_the_antimeridian() -> None:
    assert bounding_box("121,24,122,25") == {
        "latitude": {"$gte": 24.0, "$lte": 25.0},
        "longitude": {"$gte": 121.0, "$lte": 122.0},
    }
    across = bounding_box("179,-1,-179,1")
    assert across["$or"] == [{"longitude": {"$gte": 179.0}}, {"longitude": {"$lte": -179.0}}]


@pytest.mark.parametrize("box", ["1,2,3", "a,b,c,d", "181,0,182,1", "0,10,1,5", "0,-91,1,0"])
def test_a_bad_bounding_box_names_bbox(box: str) -> None:
    with pytest.raises(FieldError) as refused:
        bounding_box(box)
    assert refused.value.errors[0]["field"] == "bbox"


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(25.0330, 121.5654), (-33.8688, 151.2093), (89.9999, 10.0), (0.0, 179.9999), (0.0, -179.9999)],
)
def test_a_coarsened_fix_is_a_grid_point_within_a_cell(latitude: float, longitude: float) -> None:
    lat, lon = coarsened(latitude, longitude, 500)
    lat_step, lon_step = grid_steps(500, lat)
    assert -90 <= lat <= 90
    assert -180 <= lon <= 180
    assert abs(lat - latitude) <= lat_step / 2 + 1e-6
    # On the grid (to the 7 decimals sent), or at a pole, where the grid is cut.
    assert abs(lat - round(lat / lat_step) * lat_step) < 1e-6 or abs(lat) == 90
    assert abs(lon - round(lon / lon_step) * lon_step) < 1e-6
    # Every fix of a cell reads as the same point.
    assert coarsened(lat, lon, 500) == (lat, lon)


@pytest.mark.parametrize(
    ("instant", "zone", "day", "hour"),
    [
        (datetime(2025, 11, 20, 15, 30), "Asia/Taipei", "2025-11-20", 23),
        (datetime(2025, 11, 20, 16, 30), "Asia/Taipei", "2025-11-21", 0),
        # The day clocks go forward (Europe/Berlin, 30 March 2025) has 23 hours.
        (datetime(2025, 3, 30, 21, 59), "Europe/Berlin", "2025-03-30", 22),
        # The day they go back (26 October 2025) has 25: its last hour is 24.
        (datetime(2025, 10, 26, 22, 30), "Europe/Berlin", "2025-10-26", 24),
    ],
)
def test_local_day_and_hour(instant: datetime, zone: str, day: str, hour: int) -> None:
    assert local_day_and_hour(instant, ZoneInfo(zone)) == (day, hour)
