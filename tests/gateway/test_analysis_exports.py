"""Analysis-ready exports read by consumers nobody here wrote (pyarrow, pandas, DuckDB):
every kind and the participant-day table as CSV and Parquet give the API's rows,
types and values; every column is in the codebook and every codebook column in the
exports; the daily features match a track computed by hand; the ZIP and each
Parquet file say which schema and which server made them."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import msgspec
import pandas as pd
import pyarrow.parquet as pq
import pytest

from services.common.research import codebook
from services.common.web.api_docs import API_VERSION
from services.gateway.exports import codebook_documents
from services.gateway.exports.formats import COLUMNS, ZIP_COLUMNS
from services.ingest.features import EARTH_RADIUS_M
from services.ingest.schemas import GpsFixOut, SentimentOut
from services.media.schemas import VlogOut
from tests.conftest import Stack
from tests.media.conftest import h264_video
from tests.support import REPO, enrolled

HOME = (25.0, 121.5)
WORK = (HOME[0] + math.degrees(1000 / EARTH_RADIUS_M), HOME[1])
DAY = datetime(2025, 3, 3, tzinfo=UTC)
KINDS = ("sentiments", "gps", "vlogs", "daily")


@dataclass
class Study:
    study_id: str
    user_id: str
    other: str
    vlog_seconds: float


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def study(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Study:
    tag = uuid.uuid4().hex[:8]
    study_id, people = f"analysis-{tag}", [f"ana-{tag}", f"bo-{tag}"]
    with stack.client("admin") as admin:
        made = admin.post(
            "/api/studies", json={"study_id": study_id, "name": "Analysis", "time_zone": "UTC"}
        )
        assert made.status_code == 201, made.text
    writers = enrolled(stack, study_id, people)
    fixes = [(DAY + timedelta(minutes=10 * i), HOME) for i in range(37)]
    fixes += [(DAY + timedelta(hours=7, minutes=10 * i), WORK) for i in range(13)]
    fixes.append((DAY + timedelta(hours=9, minutes=30), HOME))
    moods = [(8, "happy", 0.4), (12, "Happy", 0.6), (20, "sad", 0.2)]
    video = h264_video(tmp_path_factory.mktemp("analysis") / "v.mp4", 77)
    seconds = 0.0
    for user_id in people:
        with httpx.Client(base_url=stack.gateway, headers=writers[user_id], timeout=60) as mine:
            batch = [
                {"latitude": lat, "longitude": lon, "timestamp": _instant(at), "accuracy": 5.0}
                for at, (lat, lon) in fixes
            ]
            stored = mine.post("/api/gps/batch", json=batch)
            assert stored.status_code in (200, 201), stored.text
            notes = [
                {
                    "emotion": emotion,
                    "intensity": intensity,
                    "timestamp": _instant(DAY + timedelta(hours=hour)),
                    "note": 'a note, with a comma and "quotes"',
                }
                for hour, emotion, intensity in moods
            ]
            assert mine.post("/api/sentiments/batch", json=notes).status_code in (200, 201)
            uploaded = mine.post(
                "/api/vlogs/upload",
                data={"title": "morning", "timestamp": _instant(DAY + timedelta(hours=10))},
                files={"video": ("v.mp4", video, "video/mp4")},
            )
            assert uploaded.status_code == 201, uploaded.text
            seconds = uploaded.json()["vlog"]["duration"]
    return Study(study_id, people[0], people[1], seconds)


def _get(stack: Stack, path: str, **params: str) -> httpx.Response:
    with stack.client("viewer") as viewer:
        answer = viewer.get(path, params=params, timeout=120)
    assert answer.status_code == 200, (path, answer.text[:300])
    return answer


def test_the_daily_features_match_the_track_computed_by_hand(stack: Stack, study: Study) -> None:
    rows = _get(stack, "/api/export/daily.json", study_id=study.study_id).json()
    assert [(r["user_id"], r["local_date"]) for r in rows] == [
        (study.user_id, "2025-03-03"),
        (study.other, "2025-03-03"),
    ]
    row = rows[0]
    assert row["study_id"] == study.study_id
    assert row["sentiments"] == 3
    assert row["mean_intensity"] == pytest.approx(0.4)
    assert (row["emotion_happy_count"], row["emotion_sad_count"]) == (2, 1)
    assert row["emotion_happy_mean_intensity"] == pytest.approx(0.5)
    assert row["emotion_sad_mean_intensity"] == pytest.approx(0.2)
    assert row["gps_fixes"] == 51
    assert row["gps_coverage_hours"] == 10
    assert row["distance_km"] == pytest.approx(2.0, abs=1e-6)
    assert row["radius_of_gyration_m"] == pytest.approx(1000 * math.sqrt(38 * 13) / 51, abs=1e-3)
    assert row["distinct_places"] == 2
    assert row["time_at_home_hours"] == pytest.approx(6.0)
    assert row["vlogs"] == 1
    assert row["vlog_seconds"] == pytest.approx(study.vlog_seconds, abs=1e-3)


def _api_rows(stack: Stack, kind: str, study_id: str) -> list[dict]:
    return _get(stack, f"/api/export/{kind}.json", study_id=study_id).json()


def _same(value: object, expected: object, column: str) -> None:
    """A consumer's value against the API's (ISO text, numbers, text or null)."""
    if expected is None:
        assert value is None or (isinstance(value, float) and math.isnan(value)), column
    elif isinstance(value, datetime):
        assert value.tzinfo is not None, column
        assert value == datetime.fromisoformat(str(expected)), column
    elif isinstance(value, date):
        assert value == date.fromisoformat(str(expected)), column
    elif isinstance(expected, float) or isinstance(value, float):
        assert float(value) == pytest.approx(float(expected)), column  # type: ignore[arg-type]
    else:
        assert value == expected, column


@pytest.mark.parametrize("kind", KINDS)
def test_pyarrow_reads_each_parquet_export_as_the_api_gives_it(
    stack: Stack, study: Study, kind: str
) -> None:
    answer = _get(stack, f"/api/export/{kind}.parquet", study_id=study.study_id)
    assert answer.headers["content-type"] == "application/vnd.apache.parquet"
    assert answer.headers["x-emogo-schema"] == codebook.KINDS[kind].schema_id
    assert f"-v{codebook.KINDS[kind].version}-" in answer.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(answer.content))
    expected = _api_rows(stack, kind, study.study_id)
    assert table.num_rows == len(expected) > 0
    schema = table.schema
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    assert metadata["emogo.schema"] == codebook.KINDS[kind].schema_id
    footer = pq.read_metadata(io.BytesIO(answer.content)).metadata
    made = json.loads(footer[b"emogo.export"])
    assert made["server_version"] == API_VERSION
    assert made["filters"] == {"study_id": study.study_id}
    assert made["time_zones"] == {study.study_id: "UTC"}
    for field in schema:
        variable = codebook.KINDS[kind].variable(field.name)
        assert variable is not None, field.name
        if field.name in ("timestamp", "received_at", "uploaded_at"):
            assert str(field.type) == "timestamp[us, tz=UTC]"
        if field.name == "local_date":
            assert str(field.type) == "date32[day]"
        if variable.category:
            assert str(field.type).startswith("dictionary<values=string")
    for got, want in zip(table.to_pylist(), expected, strict=True):
        for column, value in got.items():
            _same(value, want.get(column), f"{kind}.{column}")


@pytest.mark.parametrize("kind", KINDS)
def test_pandas_and_duckdb_read_parquet_and_csv_alike(
    stack: Stack, study: Study, kind: str, tmp_path: Path
) -> None:
    parquet = tmp_path / f"{kind}.parquet"
    parquet.write_bytes(_get(stack, f"/api/export/{kind}.parquet", study_id=study.study_id).content)
    csv_file = tmp_path / f"{kind}.csv"
    csv_file.write_bytes(_get(stack, f"/api/export/{kind}.csv", study_id=study.study_id).content)
    expected = _api_rows(stack, kind, study.study_id)

    frame = pd.read_parquet(parquet)
    assert len(frame) == len(expected)
    assert str(frame["local_date"].iloc[0]) == expected[0]["local_date"]
    assert frame["user_id"].dtype == "category"
    if "timestamp" in frame:
        assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
        assert frame["timestamp"].iloc[0] == pd.Timestamp(expected[0]["timestamp"])
    table = pd.read_csv(csv_file, encoding="utf-8-sig", keep_default_na=False)
    assert list(table.columns) == list(frame.columns)
    assert len(table) == len(expected)
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            csv_values = pd.to_numeric(table[column].replace("", None))
            assert csv_values.fillna(-1).tolist() == pytest.approx(
                frame[column].fillna(-1).tolist()
            ), column

    database = duckdb.connect()
    described = database.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(parquet)])
    types = {row[0]: row[1] for row in described.fetchall()}
    if "timestamp" in types:
        assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert types["local_date"] == "DATE"
    counted = database.execute("SELECT count(*) FROM read_csv(?, header=true)", [str(csv_file)])
    assert counted.fetchone() == (len(expected),)
    key = "_id" if kind != "daily" else "user_id || local_date"
    # One result at a time: a connection keeps only its last.
    in_parquet = database.execute(f"SELECT {key} FROM read_parquet(?)", [str(parquet)]).fetchall()  # noqa: S608
    in_csv = database.execute(
        f"SELECT {key} FROM read_csv(?, header=true, all_varchar=true)",  # noqa: S608
        [str(csv_file)],
    ).fetchall()
    assert sorted(r[0] for r in in_parquet) == sorted(r[0] for r in in_csv)


def test_duckdb_joins_daily_features_with_sentiments(
    stack: Stack, study: Study, tmp_path: Path
) -> None:
    """The worked example of docs/export-page.md."""
    for kind in ("daily", "sentiments"):
        (tmp_path / f"{kind}.parquet").write_bytes(
            _get(stack, f"/api/export/{kind}.parquet", study_id=study.study_id).content
        )
    joined = (
        duckdb.connect()
        .execute(
            """
            SELECT d.user_id, d.local_date, d.time_at_home_hours, avg(s.intensity) AS mean
            FROM read_parquet(?) d JOIN read_parquet(?) s USING (user_id, local_date)
            GROUP BY ALL ORDER BY d.user_id
            """,
            [str(tmp_path / "daily.parquet"), str(tmp_path / "sentiments.parquet")],
        )
        .fetchall()
    )
    assert [(str(r[0]), r[1], r[2]) for r in joined] == [
        (study.user_id, date(2025, 3, 3), pytest.approx(6.0)),
        (study.other, date(2025, 3, 3), pytest.approx(6.0)),
    ]
    assert joined[0][3] == pytest.approx(0.4)
    daily = pd.read_parquet(tmp_path / "daily.parquet")
    sentiments = pd.read_parquet(tmp_path / "sentiments.parquet")
    per_day = sentiments.groupby(["user_id", "local_date"], observed=True)["intensity"].mean()
    together = daily.join(per_day, on=["user_id", "local_date"])
    assert together["intensity"].tolist() == pytest.approx([0.4, 0.4])
    assert together["time_at_home_hours"].tolist() == pytest.approx([6.0, 6.0])


def test_every_column_is_in_the_codebook_and_every_codebook_column_in_the_exports(
    stack: Stack, study: Study
) -> None:
    served = _get(stack, "/api/export/codebook.json").json()
    assert served == json.loads(json.dumps(codebook_documents.codebook()))
    for kind in KINDS:
        definition = codebook.KINDS[kind]
        csv_header = (
            _get(stack, f"/api/export/{kind}.csv", study_id=study.study_id)
            .content.decode("utf-8-sig")
            .splitlines()[0]
            .split(",")
        )
        rows = _api_rows(stack, kind, study.study_id)
        ndjson = _get(stack, f"/api/export/{kind}.ndjson", study_id=study.study_id).text
        keys = set(csv_header) | {k for r in rows for k in r}
        keys |= {k for line in ndjson.splitlines() for k in json.loads(line)}
        for column in keys:
            assert definition.variable(column) is not None, f"{kind}.{column} not in the codebook"
        # Every codebook column is in the CSV (ZIP-only ones in the ZIP's; patterns once
        # per value).
        for variable in definition.variables:
            if variable.pattern:
                assert any(definition.variable(c) is variable for c in csv_header), variable.name
            elif variable.only_in is None:
                assert variable.name in csv_header, f"{kind}.{variable.name} not exported"
            else:
                assert variable.name in ZIP_COLUMNS[kind]
            assert variable.description, variable.name
        properties = served["kinds"][kind]["properties"]
        for column in COLUMNS.get(kind, []):
            assert properties[column]["description"], column
    served_csv = _get(stack, "/api/export/codebook.csv")
    assert served_csv.headers["content-type"] == "text/csv; charset=utf-8"
    table = served_csv.content.decode("utf-8-sig").splitlines()
    assert table[0] == "variable,kind,type,unit,optional,allowed,time,description,source"
    assert sum(len(k.variables) for k in codebook.KINDS.values()) == len(table) - 1


@pytest.mark.parametrize(
    ("kind", "record"), [("sentiments", SentimentOut), ("gps", GpsFixOut), ("vlogs", VlogOut)]
)
def test_a_field_added_to_a_record_kind_needs_a_codebook_entry(kind: str, record: type) -> None:
    """What the services send is what the codebook describes: a field added to a record
    without a codebook entry (or left out of the exports) fails here."""
    fields = {f.encode_name for f in msgspec.structs.fields(record)}
    definition = codebook.KINDS[kind]
    missing = sorted(f for f in fields if definition.variable(f) is None)
    assert missing == [], f"{kind}: {missing} have no codebook entry"
    assert fields - definition.api_only <= set(COLUMNS[kind])


def test_the_zip_carries_parquet_the_daily_table_the_codebook_and_provenance(
    stack: Stack, study: Study
) -> None:
    archive = zipfile.ZipFile(
        io.BytesIO(_get(stack, "/api/export/everything.zip", study_id=study.study_id).content)
    )
    names = set(archive.namelist())
    for name in (
        "sentiments.parquet",
        "gps.parquet",
        "vlogs.parquet",
        "daily.csv",
        "daily.parquet",
        "codebook.json",
        "codebook.csv",
    ):
        assert name in names, name
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["server_version"] == API_VERSION
    assert manifest["schemas"] == {k: v.schema_id for k, v in codebook.KINDS.items()}
    assert manifest["time_zones"] == {study.study_id: "UTC"}
    assert manifest["filters"]["study_id"] == study.study_id
    for name in ("gps.parquet", "daily.parquet", "vlogs.parquet"):
        table = pq.read_table(io.BytesIO(archive.read(name)))
        assert manifest["files"][name]["bytes"] == len(archive.read(name))
        assert table.num_rows > 0
    vlogs = pq.read_table(io.BytesIO(archive.read("vlogs.parquet"))).to_pylist()
    assert all(v["zip_path"] in names for v in vlogs)
    daily = pd.read_csv(io.BytesIO(archive.read("daily.csv")), encoding="utf-8-sig")
    assert daily["time_at_home_hours"].tolist() == [6.0, 6.0]


def test_the_gateway_starts_without_arrow() -> None:
    """Arrow adds 40 MiB to a process: a gateway loads it for its first Parquet
    export, not at start (most gateway processes never make one)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, services.gateway.app; print('pyarrow' in sys.modules)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"
