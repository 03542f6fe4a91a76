"""Confirmed means durable, and waits are bounded, when the database fails.

The database here is the embedded server started exactly as `make run` starts it,
on a port and folder of the test's own, so the test can kill and freeze it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from generators.telemetry import dataset
from services.launcher.config import local_mongodb_uri
from services.launcher.database import mongo_ready, secantus_argv
from tests.conftest import Stack, run_stack
from tests.support import REPO, TOKENS, all_threads_stopped, enrolled, free_port, wait_until

DB_TIMEOUT_SECONDS = 2
PARTICIPANTS, DAYS, START = 8, 10, date(2026, 9, 1)


class Database:
    """The embedded database process, which the test may kill, freeze and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.storage = folder / "db"
        self.log = folder / "database.log"
        self.uri = local_mongodb_uri(self.port)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                secantus_argv(self.port, self.storage), stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(mongo_ready(self.uri), 30, "the database to accept connections")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)
        if signum == signal.SIGSTOP:
            wait_until(all_threads_stopped(self.process.pid), 30, "the database to stop")

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(15)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, Stack]]:
    """One database and stack for the module: each test leaves the database running, and
    each looks only at its own participants' records."""
    tmp_path = tmp_path_factory.mktemp("faults")
    database = Database(tmp_path)
    database.start()
    try:
        with run_stack(
            database.uri,
            tmp_path / "stack",
            "emogo_faults",
            EMOGO_DB_TIMEOUT=str(DB_TIMEOUT_SECONDS),
        ) as stack:
            yield database, stack
    finally:
        database.stop()


def test_every_confirmed_record_survives_five_kills_of_the_database(
    faulty: tuple[Database, Stack],
) -> None:
    database, stack = faulty
    generator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "generators",
            "--gateway",
            stack.gateway,
            "--token",
            TOKENS["device"],
            "telemetry",
            "--participants",
            str(PARTICIPANTS),
            "--days",
            str(DAYS),
            "--start",
            START.isoformat(),
            "--batch",
            "25",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    rng = random.Random(11)
    kills = 0

    with MongoClient(database.uri, serverSelectionTimeoutMS=2000) as watcher:

        def stored_since(moment: datetime, wanted: int) -> bool:
            # Records received since `moment`, through the `received_at` index: counting
            # every record, ten times a second, is a scan the database would spend its
            # time on.
            query = {"received_at": {"$gte": moment}}
            try:
                found = sum(
                    watcher[stack.db_name][name].count_documents(query)
                    for name in ("sentiments", "gps_coordinates")
                )
            except PyMongoError:  # the connections the last kill cut
                return False
            return found >= wanted

        while kills < 5 and generator.poll() is None:
            # Killed again once writes flow again: a random number of records later.
            since, wanted = datetime.now(UTC), rng.randint(50, 500)
            wait_until(
                lambda since=since, wanted=wanted: (
                    generator.poll() is not None or stored_since(since, wanted)
                ),
                120,
                "writes to go on",
            )
            if generator.poll() is not None:
                break
            database.kill()
            kills += 1
            database.start()
    output = generator.communicate(timeout=300)[0].decode()
    assert kills == 5, f"the generator finished after {kills} kills: make its run longer"
    # The generator retries until every batch is confirmed; exit 0 means all were.
    assert generator.returncode == 0, output

    moods, fixes = dataset(PARTICIPANTS, DAYS, 1, START)
    with MongoClient(database.uri) as client:
        stored = client[stack.db_name]
        for collection, records in (("sentiments", moods), ("gps_coordinates", fixes)):
            theirs = {"user_id": {"$in": sorted({r["user_id"] for r in records})}}
            client_ids = [
                d["client_id"] for d in stored[collection].find(theirs, {"client_id": 1, "_id": 0})
            ]
            assert len(client_ids) == len(records), collection  # nothing lost, nothing twice
            assert set(client_ids) == {r["client_id"] for r in records}, collection

    # The daily rollups add up to the records again once the failures have settled.
    viewer = {"Authorization": f"Bearer {TOKENS['viewer']}"}

    # Whole days (the rollups answer) around the generated ones, which no other test's
    # records fall in.
    days = {"since": START.isoformat(), "until": (START + timedelta(days=DAYS)).isoformat()}

    def rollups_agree() -> bool:
        totals = httpx.get(
            f"{stack.gateway}/api/telemetry/summary", params=days, headers=viewer, timeout=30
        )
        body = totals.json() if totals.status_code == 200 else {}
        return (body.get("sentiments"), body.get("gps_fixes")) == (len(moods), len(fixes))

    wait_until(rollups_agree, 4 * DB_TIMEOUT_SECONDS + 30, "the rollups to match the records")


def test_a_frozen_database_gives_503_with_retry_after_then_recovers(
    faulty: tuple[Database, Stack],
) -> None:
    database, stack = faulty
    device = httpx.Client(
        base_url=stack.gateway,
        headers={"Authorization": f"Bearer {TOKENS['device']}"},
        # Past the database deadline, with room: a hang would fail here.
        timeout=3 * DB_TIMEOUT_SECONDS,
    )
    record = {"user_id": "frozen", "emotion": "calm", "intensity": 0.5}
    with device:
        assert device.post("/api/sentiments", json=record).status_code == 201
        database.signal(signal.SIGSTOP)
        try:
            answers = [
                device.post("/api/sentiments", json=record),
                device.get(
                    "/api/sentiments",
                    params={"user_id": "frozen"},
                    headers={"Authorization": f"Bearer {TOKENS['viewer']}"},
                ),
            ]
        finally:
            database.signal(signal.SIGCONT)
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"].isdigit()
            assert "database" in answer.json()["detail"]["error"]

        def recovered() -> bool:
            return device.post("/api/sentiments", json=record).status_code == 201

        wait_until(recovered, 30, "the stack to recover")


def test_every_route_answers_503_with_retry_after_within_one_deadline(
    faulty: tuple[Database, Stack],
) -> None:
    """Each request once waited one deadline per database step (the revocation check, the
    token, the record), and the gateway's fan-outs answered 503 without Retry-After, or
    500 (the daily table): 10 to 15 s at the default 5 s deadline. Now every request
    answers 503 with Retry-After within one deadline (a client waiting 1.5 deadlines)."""
    database, stack = faulty
    study = f"frozen-{uuid.uuid4().hex[:6]}"
    with stack.client("admin") as admin:
        assert admin.post("/api/studies", json={"study_id": study, "name": "F"}).is_success
        ta = admin.post("/api/viewer-tokens", json={"name": "TA", "study_ids": [study]})
    phones = enrolled(stack, study, ["used", "fresh"])
    viewer = {"Authorization": f"Bearer {TOKENS['viewer']}"}
    assistant = {"Authorization": f"Bearer {ta.json()['token']}"}
    record = {"emotion": "calm", "intensity": 0.5}
    with httpx.Client(base_url=stack.gateway, timeout=1.5 * DB_TIMEOUT_SECONDS) as client:
        assert client.post("/api/sentiments", json=record, headers=phones["used"]).is_success
        # Each waits for its own deadline, so all but the first are sent at once.
        later: dict[str, tuple[str, str, dict[str, str]]] = {
            "participant post": ("POST", "/api/sentiments", phones["used"]),
            "fresh participant post": ("POST", "/api/sentiments", phones["fresh"]),
            "study viewer list": ("GET", "/api/sentiments", assistant),
            "study viewer export": ("GET", "/api/export/sentiments.csv", assistant),
        }
        for path in (
            "/api/export/sentiments.csv",
            "/api/export/everything.zip",
            "/api/export/all",
            "/api/export/daily.csv",
            "/api/export/gps.parquet",
            "/api/telemetry/compliance",
            "/api/vlogs",
        ):
            later[path] = ("GET", path, viewer)

        def send(method: str, path: str, headers: dict[str, str]) -> httpx.Response:
            body = record if method == "POST" else None
            return client.request(method, path, json=body, headers=headers)

        database.signal(signal.SIGSTOP)
        try:
            # The global viewer first: its read leaves the revocation check due.
            answers = {"viewer list": client.get("/api/gps", headers=viewer)}
            with ThreadPoolExecutor(len(later)) as pool:
                sent = {what: pool.submit(send, *request) for what, request in later.items()}
                answers |= {what: answer.result() for what, answer in sent.items()}
        finally:
            database.signal(signal.SIGCONT)
    for what, answer in answers.items():
        assert answer.status_code == 503, (what, answer.status_code, answer.text[:200])
        assert answer.headers["retry-after"].isdigit(), what
        assert answer.json()["code"] == 503, what
