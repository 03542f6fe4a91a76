"""The export page's view logic on its own: charts, CSV, names, times, merging."""

from __future__ import annotations

import asyncio
import csv
import io

from services.gateway.exports.archive import video_path
from services.gateway.exports.formats import COLUMNS, as_csv, spreadsheet_safe
from services.gateway.pages.charts import (
    emotion_colour,
    emotion_distribution,
    gps_track,
    intensity_over_time,
)
from services.gateway.pages.export_page import human_bytes, local_time, merge_participants


def test_charts_escape_labels_and_say_nothing_without_data() -> None:
    chart = emotion_distribution({"<b>joy</b>": {"count": 3, "mean_intensity": 0.5}})
    assert "&lt;b&gt;joy&lt;/b&gt;" in chart
    assert "<b>" not in chart
    assert emotion_distribution({}) is None
    assert intensity_over_time([]) is None
    assert gps_track([]) is None
    line = intensity_over_time(
        [
            {"day": "2025-03-01", "emotion": "calm", "count": 2, "mean_intensity": 0.25},
            {"day": "2025-03-02", "emotion": "calm", "count": 1, "mean_intensity": 0.75},
        ]
    )
    assert line.count("<circle") == 2
    assert "<polyline" in line


def test_a_track_keeps_its_shape_and_marks_start_and_end() -> None:
    fixes = [{"latitude": 25.0 + i * 0.001, "longitude": 121.5} for i in range(10)]
    picture = gps_track(fixes, size=100)
    assert picture.count("<circle") == 2
    assert "10 fixes" in picture


def test_csv_quotes_and_defuses_formulas() -> None:
    assert spreadsheet_safe("=1+1") == "'=1+1"
    assert spreadsheet_safe("-2") == "'-2"
    assert spreadsheet_safe(-2.5) == -2.5  # numbers stay numbers
    assert spreadsheet_safe("calm") == "calm"

    async def records():
        yield {"_id": "a", "user_id": "P1", "note": 'line\nbreak, "quoted"', "intensity": 0.5}
        yield {"_id": "b", "user_id": "P2", "note": "@SUM(A1)", "intensity": None}

    async def collect() -> bytes:
        return b"".join([piece async for piece in as_csv(COLUMNS["sentiments"], records())])

    text = asyncio.run(collect()).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["note"] for row in rows] == ['line\nbreak, "quoted"', "'@SUM(A1)"]
    assert rows[1]["intensity"] == ""


def test_names_times_and_sizes() -> None:
    vlog = {"_id": "0123456789abcdef01234567", "user_id": "P1", "title": "Mon été / ../x",
            "timestamp": "2025-03-02T10:30:00Z", "container": "mov"}  # fmt: skip
    path = video_path(vlog)
    assert path.startswith("videos/P1/2025-03-02_Mon_été_")
    assert path.endswith("x_234567.mov")
    assert path.count("/") == 2
    assert ".." not in path
    assert local_time("2025-03-02T16:30:00Z", "Asia/Taipei") == "2025-03-03 00:30"
    assert local_time(None, "UTC") == ""
    assert human_bytes(0) == "0 B"
    assert human_bytes(1536) == "1.5 KB"
    assert human_bytes(5 * 1024**3) == "5.0 GB"


def test_participants_merge_telemetry_and_vlogs() -> None:
    rows = merge_participants(
        [
            {
                "user_id": "P1",
                "sentiments": 2,
                "gps_fixes": 0,
                "first_activity": "2025-03-02T00:00:00Z",
                "last_activity": "2025-03-03T00:00:00Z",
            }
        ],
        [
            {
                "user_id": "P1",
                "vlogs": 3,
                "first_recorded": "2025-03-01T00:00:00Z",
                "last_recorded": "2025-03-02T00:00:00Z",
            }
        ],
    )
    assert rows == [
        {
            "user_id": "P1",
            "sentiments": 2,
            "gps_fixes": 0,
            "vlogs": 3,
            "first_activity": "2025-03-01T00:00:00Z",
            "last_activity": "2025-03-03T00:00:00Z",
        }
    ]


def test_participants_with_only_vlogs_get_a_row_on_their_page() -> None:
    telemetry = [{"user_id": "B", "sentiments": 1, "gps_fixes": 0}]
    vlogs = [
        {"user_id": uid, "vlogs": 1, "first_recorded": "2025-01-01", "last_recorded": "2025-01-02"}
        for uid in ("A", "C", "Z")
    ]
    # A middle page ending at B shows A (after nothing) but not C or Z (later pages).
    assert [r["user_id"] for r in merge_participants(telemetry, vlogs, None, "B")] == ["A", "B"]
    # The last page takes everything after the previous page.
    last = merge_participants(telemetry, vlogs, "A", None)
    assert [r["user_id"] for r in last] == ["B", "C", "Z"]
    assert last[1]["sentiments"] == 0


def test_each_emotion_has_one_colour_on_every_chart() -> None:
    """The bar chart sorts by count and the daily chart by name: an emotion's colour
    must not depend on either. The usual eight are all told apart."""
    counts = {
        "sad": {"count": 9, "mean_intensity": 0.2},
        "happy": {"count": 5, "mean_intensity": 0.8},
        "zen": {"count": 1, "mean_intensity": 0.5},
    }
    bars = str(emotion_distribution(counts))
    line = str(
        intensity_over_time(
            [
                {"day": "2025-03-01", "emotion": name, "count": 1, "mean_intensity": 0.5}
                for name in counts
            ]
        )
    )
    for name in counts:
        shade = emotion_colour(name)
        assert f'fill="{shade}"><title>{counts[name]["count"]}</title>' in bars
        assert f'stroke="{shade}"' in line
        assert f'fill="{shade}">&#9632; {name}</text>' in line
    usual = ("happy", "calm", "excited", "neutral", "tired", "anxious", "sad", "angry")
    assert len({emotion_colour(name) for name in usual}) == len(usual)
    assert emotion_colour("zen") == emotion_colour("zen")
