"""The fold adds each record to its rows exactly once: over many small folds, when a
fold is done again after being cut short, and when a row is already past the mark."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import init_beanie
from bson import ObjectId
from pymongo import AsyncMongoClient

from services.common.research.studies import Study, StudyZones
from services.ingest import deletions, folding, rollup_worker, rollups, summaries
from services.ingest.kinds import GPS_FIXES, SENTIMENTS
from services.ingest.models import DOCUMENTS

BASE = datetime(2026, 3, 1, tzinfo=UTC)
STUDIES = (None, "study-a", "study-b")
# Days counted in three zones: a record's local day is not always its UTC day.
ZONES = StudyZones({"study-a": "Asia/Taipei", "study-b": "America/New_York"}, "Europe/Berlin")


def sentiment(
    user: str, day: int, hour: int, received: datetime, emotion: str, study: str | None = None
) -> dict:
    return {
        "_id": ObjectId(),
        **({"study_id": study} if study else {}),
        "user_id": user,
        "emotion": emotion,
        "intensity": hour / 24,
        "timestamp": BASE + timedelta(days=day, hours=hour),
        "received_at": received,
    }


def gps_fix(user: str, day: int, received: datetime) -> dict:
    return {
        "_id": ObjectId(),
        "user_id": user,
        "latitude": 25.0,
        "longitude": 121.5,
        "timestamp": BASE + timedelta(days=day, hours=9),
        "received_at": received,
    }


async def rows_of(collection: Any) -> list[tuple]:
    """Every row's key and counts (float sums rounded: added up in another order)."""
    found = await collection.find({}, {"_id": 0, "folded_to": 0}).to_list()
    return sorted(
        (
            row["kind"],
            row.get("level", ""),
            row["study"],
            row["user_id"],
            row["day"],
            row["local_day"],
            row["emotion"],
            row["records"],
            round(row["intensity_sum"], 9),
            row["first"],
            row["last"],
            row["hours"],
            sorted(row.get("days", {}).items()),
            sorted(row.get("day_hours", {}).items()),
            sorted((day, round(total, 9)) for day, total in row.get("day_intensity", {}).items()),
        )
        for row in found
    )


def test_folds_add_every_record_once(mongodb_uri: str, db_name: str) -> None:
    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri, tz_aware=True)
        database = client[db_name]
        await init_beanie(database=database, document_models=[*DOCUMENTS, Study])
        state = database["telemetry_daily_state"]
        clock = BASE + timedelta(days=30)

        def tick(seconds: float = 1) -> datetime:
            nonlocal clock
            clock += timedelta(seconds=seconds)
            return clock

        # History, then a full count up to now.
        history = [
            sentiment(f"u{n % 3}", n % 4, n % 24, tick(), ("happy", "sad")[n % 2])
            for n in range(40)
        ]
        await SENTIMENTS.collection.insert_many(history)
        await GPS_FIXES.collection.insert_many([gps_fix("u0", d, tick()) for d in range(3)])
        mark = tick()
        await folding.recount_all(mark, ZONES)

        # Many small folds, each over the records received since the last; the same
        # participant ids also in two studies (another person each).
        for round_number in range(6):
            start = mark
            batch = [
                sentiment(
                    f"u{n % 4}", n % 5, n % 24, tick(), ("calm", "happy")[n % 2], STUDIES[n % 3]
                )
                for n in range(round_number, round_number + 7)
            ]
            await SENTIMENTS.collection.insert_many(batch)
            await GPS_FIXES.collection.insert_one(gps_fix("u3", round_number, tick()))
            mark = tick()
            await folding.fold(start, mark, ZONES)
            assert (await rollups.read_state())["folded_before"] == mark

        # A fold cut short: its rows moved on, the mark did not. Done again later with
        # more records, it must count each record once.
        start = mark
        await SENTIMENTS.collection.insert_many(
            [sentiment("u1", 2, h, tick(), "sad") for h in range(5)]
        )
        first_try = tick()
        await folding.fold(start, first_try, ZONES)
        await state.update_one({"_id": rollups.STATE_ID}, {"$set": {"folded_before": start}})
        await SENTIMENTS.collection.insert_many(
            [sentiment("u1", 2, h, tick(), "sad") for h in range(5, 9)]
            + [
                sentiment("u2", 9, 1, tick(), "angry"),
                sentiment("u1", 2, 3, tick(), "sad", "study-a"),
            ]
        )
        mark = tick()
        await folding.fold(start, mark, ZONES)

        folded = {
            "daily": await rows_of(database["telemetry_daily"]),
            "totals": await rows_of(database["telemetry_totals"]),
            "days": (await rollups.read_state())["days"],
        }
        # The same records counted from scratch, over rows with a field of another
        # version: none of it outlives the recount.
        for name in ("telemetry_daily", "telemetry_totals"):
            await database[name].update_many({}, {"$set": {"retired_field": 1}})
        await folding.recount_all(mark, ZONES)
        for name in ("telemetry_daily", "telemetry_totals"):
            assert await database[name].count_documents({"retired_field": 1}) == 0
        recounted = {
            "daily": await rows_of(database["telemetry_daily"]),
            "totals": await rows_of(database["telemetry_totals"]),
            "days": (await rollups.read_state())["days"],
        }
        assert folded == recounted

        # Recounted again later: the rows that are right are not written again (each
        # keeps its `folded_to`), a wrong one is corrected, a row without records and
        # a row of an older version (no study, no local day) are removed.
        daily, totals = database["telemetry_daily"], database["telemetry_totals"]
        written = {
            row["_id"]: row["folded_to"]
            for collection in (daily, totals)
            async for row in collection.find({}, {"folded_to": 1})
        }
        wrong = await daily.find_one({"kind": "sentiments"})
        await daily.update_one({"_id": wrong["_id"]}, {"$inc": {"records": 5}})
        await daily.insert_many(
            [
                {**{k: v for k, v in wrong.items() if k != "_id"}, "user_id": "nobody"},
                {"kind": "sentiments", "user_id": "u1", "day": "2026-03-02", "emotion": "sad"},
            ]
        )
        await folding.recount_all(tick(), ZONES)
        assert await rows_of(daily) == recounted["daily"]
        assert await rows_of(totals) == recounted["totals"]
        rewritten = {
            row["_id"]
            for collection in (daily, totals)
            async for row in collection.find({}, {"folded_to": 1})
            if written.get(row["_id"]) != row["folded_to"]
        }
        assert rewritten == {wrong["_id"]}
        assert sum(row[7] for row in folded["daily"] if row[0] == "sentiments") == 40 + 42 + 11
        # Each record in the local day of its study's zone, and in its hour of that day.
        expected: dict[tuple, list[int]] = {}
        async for record in SENTIMENTS.collection.find({}):
            local = record["timestamp"].astimezone(ZONES.zone(record.get("study_id")))
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            entry = expected.setdefault(
                (record.get("study_id") or "", local.date().isoformat()), [0, 0]
            )
            entry[0] += 1
            entry[1] |= 1 << int((local - midnight).total_seconds() // 3600)
        counted: dict[tuple, list[int]] = {}
        for row in folded["daily"]:
            if row[0] == "sentiments":
                entry = counted.setdefault((row[2], row[5]), [0, 0])
                entry[0] += row[7]
                entry[1] |= row[11]
        assert counted == expected
        assert any(row[4] != row[5] for row in folded["daily"])  # UTC day, local day

        # Each study's timeline (its local days in one row per emotion) gives what its
        # records give, after all those folds.
        for scope in ("study-a", None):
            rows = await rollups.rollup_rows({"study_id": scope}, rollups.TIMELINE, (SENTIMENTS,))
            assert rows is not None
            by_day: dict[tuple, list[float]] = {}
            async for record in SENTIMENTS.collection.find({"study_id": scope}):
                local = record["timestamp"].astimezone(ZONES.zone(scope))
                entry = by_day.setdefault((local.date().isoformat(), record["emotion"]), [0, 0.0])
                entry[0] += 1
                entry[1] += record["intensity"]
            points = summaries._timeline_from(rows)
            assert [(p.day, p.emotion, p.count) for p in points] == [
                (day, emotion, n) for (day, emotion), (n, _) in sorted(by_day.items())
            ]
            for point in points:
                n, total = by_day[(point.day, point.emotion)]
                assert point.mean_intensity == pytest.approx(total / n, abs=1e-6)

        # Each credential's scope reads its studies' rows: one study, `default` (records
        # without a study), or several; the same as counting the records.
        for scope in ("study-a", None, {"$in": ["study-b", None]}, {"$in": ["study-a"]}):
            rows = await rollups.rollup_rows({"study_id": scope}, rollups.PARTICIPANT)
            assert rows is not None
            from_rows = sum(row["records"] for row in rows if row["kind"] == "sentiments")
            assert from_rows == await SENTIMENTS.collection.count_documents({"study_id": scope})
            assert from_rows > 0
        await client.close()

    asyncio.run(scenario())


def test_a_study_moved_to_another_zone_is_recounted(mongodb_uri: str, db_name: str) -> None:
    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri, tz_aware=True)
        database = client[db_name]
        await init_beanie(database=database, document_models=[*DOCUMENTS, Study])
        study_id = "moving-study"
        await database["studies"].insert_one(
            {"study_id": study_id, "name": "M", "time_zone": "UTC", "status": "active"}
        )
        # 23:30 UTC: that day in UTC, the next one in Taipei.
        late = sentiment("mover", 0, 23, BASE, "calm", study_id)
        late["timestamp"] += timedelta(minutes=30)
        late["received_at"] = datetime.now(UTC) - timedelta(minutes=5)
        await SENTIMENTS.collection.insert_one(late)
        folder = rollup_worker.RollupFolder(settle_seconds=1, fallback_zone="UTC")

        async def local_days() -> list[str]:
            rows = await rollups.rollup_rows({"study_id": study_id}, rollups.DAILY)
            assert rows is not None
            return sorted(row["local_day"] for row in rows if row["user_id"] == "mover")

        await folder.step()  # the first count
        assert await local_days() == ["2026-03-01"]
        state = await rollups.read_state()
        assert rollup_worker.moved_studies(state, await StudyZones.load("UTC")) == []

        await database["studies"].update_one(
            {"study_id": study_id}, {"$set": {"time_zone": "Asia/Taipei"}}
        )
        zones = await StudyZones.load("UTC")
        assert rollup_worker.moved_studies(await rollups.read_state(), zones) == [study_id]
        await folder.step()  # sees the move: recounts
        assert await local_days() == ["2026-03-02"]
        assert (await rollups.read_state())["zones"][study_id] == "Asia/Taipei"
        await client.close()

    asyncio.run(scenario())


def test_deleting_a_participant_or_a_study_leaves_rollups_as_a_recount_would(
    mongodb_uri: str, db_name: str
) -> None:
    """Deleting one participant of one study (the same id in another study is another
    person), then a whole study: their rows go, and every total left is what counting
    the remaining records from scratch gives."""

    async def scenario() -> None:
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri, tz_aware=True)
        database = client[db_name]
        await init_beanie(database=database, document_models=[*DOCUMENTS, Study])
        received = BASE + timedelta(days=20)
        records = [
            sentiment(user, day, 9 + day, received, emotion, study)
            for study in STUDIES
            for user in ("u1", "u2")
            for day, emotion in ((0, "calm"), (1, "happy"), (2, "calm"))
        ]
        await SENTIMENTS.collection.insert_many(records)
        await GPS_FIXES.collection.insert_many([gps_fix("u1", d, received) for d in range(2)])
        await folding.recount_all(BASE + timedelta(days=21), ZONES)
        daily, totals = database["telemetry_daily"], database["telemetry_totals"]
        assert await daily.count_documents({"user_id": "u1", "study": "study-a"}) > 0

        deleted = await deletions.delete_participant("u1", "study-a")
        assert (deleted.sentiments, deleted.gps_fixes) == (3, 0)
        assert await daily.count_documents({"user_id": "u1", "study": "study-a"}) == 0
        assert await totals.count_documents({"user_id": "u1", "study": "study-a"}) == 0
        assert await daily.count_documents({"user_id": "u1", "study": "study-b"}) > 0

        async def as_recounted() -> None:
            left = {
                "daily": await rows_of(daily),
                "totals": await rows_of(totals),
                "days": (await rollups.read_state())["days"],
            }
            await folding.recount_all(BASE + timedelta(days=21), ZONES)
            assert left == {
                "daily": await rows_of(daily),
                "totals": await rows_of(totals),
                "days": (await rollups.read_state())["days"],
            }

        await as_recounted()
        deleted = await deletions.delete_study("study-b")
        assert (deleted.sentiments, deleted.gps_fixes) == (6, 0)
        assert await daily.count_documents({"study": "study-b"}) == 0
        assert await totals.count_documents({"study": "study-b"}) == 0
        assert await SENTIMENTS.collection.count_documents({"study_id": "study-b"}) == 0
        await as_recounted()
        await client.close()

    asyncio.run(scenario())
