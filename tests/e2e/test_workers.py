"""More than one process per service: two workers each of ingest, media and admin
behind the gateway, a second ingest replica, and workers killed under load."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from pymongo import MongoClient

from services.media.storage import BUCKET
from tests.conftest import Stack, run_stack, stack_of_its_own
from tests.media.conftest import opencv_video
from tests.support import (
    all_threads_stopped,
    free_port,
    http_ok,
    log_entries,
    service_environ,
    start_python,
    stop,
    wait_until,
)

SIGN_INS_PER_MINUTE = 30
workers = stack_of_its_own(
    "emogo_workers",
    EMOGO_INGEST_WORKERS="2",
    EMOGO_MEDIA_WORKERS="2",
    EMOGO_ADMIN_WORKERS="2",
    EMOGO_SIGN_IN_REQUESTS_PER_MINUTE=str(SIGN_INS_PER_MINUTE),
    # Rollups fold 2 * timeout + 1 s behind the writes: a short timeout, a quick fold.
    EMOGO_DB_TIMEOUT="1",
)


def worker_pids(stack: Stack, service: str) -> set[int]:
    return {p.pid for p in psutil.Process(stack.supervisor.processes[service].pid).children()}


def served_by(stack: Stack, service: str) -> set[str]:
    """The worker numbers that wrote access lines to the service's log."""
    entries = log_entries(stack.config.log_dir / f"{service}.log")
    return {e["worker"] for e in entries if e["logger"] == "emogo.access" and "worker" in e}


def sentiment(participant: str, n: int) -> dict:
    return {
        "user_id": participant,
        "emotion": ("happy", "calm", "sad")[n % 3],
        "intensity": (n % 10) / 10,
        "timestamp": f"2025-03-{1 + n % 5:02d}T{n % 24:02d}:00:00Z",
        "client_id": f"{participant}-{n}",
    }


def post_until_stored(client: httpx.Client, record: dict) -> None:
    """What a phone does: resend with the same client id until the answer says stored
    (201) or already stored (409)."""

    def stored() -> bool:
        try:
            status = client.post("/api/sentiments", json=record).status_code
        except httpx.TransportError:
            return False
        assert status in (201, 409, 502, 503), status
        return status in (201, 409)

    wait_until(stored, 30, f"{record['client_id']} to be stored")


def storing(stack: Stack, participant: str) -> Callable[[], bool]:
    """Whether the load is under way: some of `participant`'s records are stored."""
    return lambda: len(stored_client_ids(stack, participant)) >= 20


def stored_client_ids(stack: Stack, participant: str) -> list[str]:
    with MongoClient(stack.config.mongodb_uri) as client:
        found = client[stack.db_name]["sentiments"].find(
            {"user_id": participant}, {"client_id": 1, "_id": 0}
        )
        return [d["client_id"] for d in found]


def test_two_workers_store_every_record_exactly_once_and_agree_on_totals(workers: Stack) -> None:
    assert len(worker_pids(workers, "ingest")) == 2
    participant = f"w-{uuid.uuid4().hex[:8]}"
    singles = [sentiment(participant, n) for n in range(200)]
    batches = [[sentiment(participant, n) for n in range(b, b + 50)] for b in range(200, 600, 50)]

    def send_single(record: dict) -> int:
        with workers.client("device") as device:  # a connection of its own each
            return device.post("/api/sentiments", json=record).status_code

    def send_batch(batch: list[dict]) -> dict:
        with workers.client("device") as device:
            return device.post("/api/sentiments/batch", json=batch).json()

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send_single, singles))
        results = list(pool.map(send_batch, batches))
        # The same records again, at once, from many clients: all are duplicates.
        repeats = list(pool.map(send_single, singles[:50]))
    assert statuses == [201] * 200
    assert [r["stored"] for r in results] == [50] * 8
    assert repeats == [409] * 50

    client_ids = stored_client_ids(workers, participant)
    sent = singles + [record for batch in batches for record in batch]
    assert sorted(client_ids) == sorted(r["client_id"] for r in sent)
    assert served_by(workers, "ingest") == {"1", "2"}

    # Every worker's totals include every write at once, and the same after the fold
    # (per participant, per day of everyone, and per participant and day).
    def totals() -> list[int]:
        answers = []
        for _ in range(6):
            with workers.client("viewer") as viewer:
                summary = viewer.get("/api/telemetry/summary", params={"user_id": participant})
                answers.append(summary.json()["sentiments"])
        return answers

    def views() -> list:
        with workers.client("viewer") as viewer:
            return [
                viewer.get(path, params=params).json()
                for path, params in (
                    ("/api/telemetry/timeline", {"user_id": participant}),
                    ("/api/telemetry/timeline", {}),
                    (f"/api/telemetry/participants/{participant}", {}),
                    ("/api/telemetry/participants", {"limit": 1000}),
                    ("/api/telemetry/summary", {}),
                    ("/api/telemetry/summary", {"since": "2025-03-02", "until": "2025-03-04"}),
                )
            ]

    assert totals() == [600] * 6
    before_fold = views()
    assert sum(p["count"] for p in before_fold[0]) == 600
    with MongoClient(workers.config.mongodb_uri) as client:
        rows = client[workers.db_name]["telemetry_daily"]

        def folded() -> bool:
            found = rows.find({"user_id": participant}, {"records": 1})
            return sum(r["records"] for r in found) == 600

        wait_until(folded, 30, "the rollups to fold the new records")
    assert totals() == [600] * 6
    assert views() == before_fold


def test_a_killed_worker_is_replaced_and_retrying_clients_lose_nothing(workers: Stack) -> None:
    participant = f"k-{uuid.uuid4().hex[:8]}"
    records = [sentiment(participant, n) for n in range(400)]
    reads: list[int] = []
    stop_reading = threading.Event()

    def read_while_loading() -> None:
        with workers.client("viewer") as viewer:
            while not stop_reading.is_set():
                reads.append(viewer.get("/api/sentiments", params={"limit": 5}).status_code)

    reader = threading.Thread(target=read_while_loading)
    reader.start()
    before = worker_pids(workers, "ingest")
    try:
        with ThreadPoolExecutor(8) as pool, workers.client("device") as device:
            sent = [pool.submit(post_until_stored, device, r) for r in records]
            wait_until(storing(workers, participant), 30, "the first records stored")
            victim = sorted(before)[0]
            psutil.Process(victim).send_signal(signal.SIGKILL)
            for future in sent:
                future.result()
    finally:
        stop_reading.set()
        reader.join()
    wait_until(lambda: len(worker_pids(workers, "ingest")) == 2, 30, "a new ingest worker")
    assert victim not in worker_pids(workers, "ingest")
    assert sorted(stored_client_ids(workers, participant)) == sorted(
        r["client_id"] for r in records
    )
    # Reads are idempotent: the gateway retried those the dying worker dropped.
    assert len(reads) > 10
    assert set(reads) == {200}


def test_media_workers_share_uploads_and_previews(workers: Stack, tmp_path: Path) -> None:
    assert len(worker_pids(workers, "media")) == 2
    participant = f"m-{uuid.uuid4().hex[:8]}"
    clips = [opencv_video(tmp_path / f"{n}.mp4", "mp4v", 40 + n) for n in range(6)]

    def send(clip: bytes) -> dict:
        # Each worker receives a few uploads at once and asks for a retry beyond that.
        answers: list[httpx.Response] = []

        def taken() -> bool:
            with workers.client("device") as device:
                answers.append(
                    device.post(
                        "/api/vlogs/upload",
                        data={"user_id": participant},
                        files={"video": ("clip.mp4", clip, "video/mp4")},
                    )
                )
            return answers[-1].status_code != 429

        wait_until(taken, 60, "an upload slot")
        assert answers[-1].status_code in (200, 201), answers[-1].text
        return answers[-1].json()

    with ThreadPoolExecutor(6) as pool:
        vlogs = list(pool.map(send, clips))
        again = list(pool.map(send, clips[:2]))  # the same bytes: the same vlogs
    assert [v["id"] for v in again] == [v["id"] for v in vlogs[:2]]
    assert served_by(workers, "media") == {"1", "2"}

    with workers.client("viewer") as viewer:

        def previews_done() -> bool:
            listed = viewer.get("/api/vlogs", params={"user_id": participant}).json()
            return len(listed) == 6 and all(v["preview_state"] == "ready" for v in listed)

        wait_until(previews_done, 120, "every preview")
        for vlog, clip in zip(vlogs, clips, strict=True):
            body = viewer.get(f"/api/vlogs/{vlog['id']}/download").content
            assert hashlib.sha256(body).hexdigest() == hashlib.sha256(clip).hexdigest()
    with MongoClient(workers.config.mongodb_uri) as client:
        files = client[workers.db_name][f"{BUCKET}.files"]
        # One preview per vlog in storage: no preview was made twice (nor left over).
        names = [f"{v['id']}.preview.mp4" for v in vlogs]
        assert files.count_documents({"filename": {"$in": names}}) == 6


def _wait_for_a_quiet_minute_edge() -> None:
    """The limit weighs the last minute's requests; start well inside a minute. (The
    limit is counted in the admin processes' own clock, which a test cannot set.)"""
    wait_until(lambda: time.time() % 60 <= 40, 25, "a minute with 20 s left")


def test_sign_in_limits_and_locks_hold_across_admin_workers(workers: Stack) -> None:
    _wait_for_a_quiet_minute_edge()
    username = f"user{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"

    def call(path: str, body: dict) -> httpx.Response:
        with httpx.Client(base_url=workers.gateway, timeout=30) as fresh:  # any worker
            return fresh.post(path, json=body)

    assert call("/api/v1/register_user", {"username": username, "password": password}).is_success
    wrong = {"username": username, "password": "wrong password"}
    with ThreadPoolExecutor(5) as pool:
        failures = list(pool.map(lambda _: call("/api/v1/authenticate_user", wrong), range(5)))
    assert [f.status_code for f in failures] == [400] * 5
    # Five failures lock the name on every worker. Each worker answers in turn while
    # the other is frozen (SIGSTOP), on connections straight to the service's shared
    # port: the kernel may hand every connection to one worker otherwise.
    right = {"username": username, "password": password}
    locked = []
    for pid in worker_pids(workers, "admin"):
        others = [psutil.Process(p) for p in worker_pids(workers, "admin") - {pid}]
        for other in others:
            other.suspend()
            wait_until(all_threads_stopped(other.pid), 30, "the other worker to stop")
        try:
            with httpx.Client(base_url=workers.config.url("admin"), timeout=30) as direct:
                for _ in range(6):
                    locked.append(
                        direct.post(
                            "/api/v1/authenticate_user", json=right, headers={"connection": "close"}
                        )
                    )
        finally:
            for other in others:
                other.resume()
    assert [r.status_code for r in locked] == [429] * 12
    assert all("failed sign-ins" in r.json()["detail"]["error"] for r in locked)
    assert served_by(workers, "admin") == {"1", "2"}

    # 18 requests so far from this address; the limit allows 30 a minute in all.
    strangers = [{"username": f"nobody{n}", "password": "x" * 8} for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda body: call("/api/v1/authenticate_user", body), strangers))
    statuses = sorted(a.status_code for a in answers)
    allowed = SIGN_INS_PER_MINUTE - 18
    assert statuses == [400] * allowed + [429] * (20 - allowed)
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "sign-in requests from this address" in refused.json()["detail"]["error"]


@pytest.fixture(scope="module")
def replicas(mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose gateway balances ingest over two replicas: the launcher's own and
    a second process on a port of its own."""
    folder = tmp_path_factory.mktemp("replicas")
    db_name, first, second = "emogo_replicas", free_port(), free_port()
    env = service_environ(mongodb_uri, folder / "second", db_name, EMOGO_INGEST_PORT=str(second))
    other = start_python(["-m", "services.ingest"], env, folder / "second.out")
    try:
        wait_until(http_ok(f"http://127.0.0.1:{second}/ready"), 30, "the second replica")
        with run_stack(
            mongodb_uri,
            folder / "stack",
            db_name,
            EMOGO_INGEST_PORT=str(first),
            EMOGO_INGEST_URL=f"http://127.0.0.1:{first},http://127.0.0.1:{second}",
        ) as running:
            running.supervisor.specs["second-ingest"] = running.supervisor.specs["ingest"]
            running.supervisor.processes["second-ingest"] = other
            yield running
    finally:
        stop(other)


def test_the_gateway_balances_replicas_and_passes_over_one_that_is_down(replicas: Stack) -> None:
    with replicas.client("viewer") as viewer:
        health = viewer.get("/health").json()["services"]["ingest"]
    assert (health["replicas"], health["replicas_up"]) == (2, 2)

    participant = f"r-{uuid.uuid4().hex[:8]}"
    records = [sentiment(participant, n) for n in range(300)]
    with ThreadPoolExecutor(8) as pool, replicas.client("device") as device:
        sent = [pool.submit(post_until_stored, device, r) for r in records]
        wait_until(storing(replicas, participant), 30, "the first records stored")
        replicas.supervisor.processes["second-ingest"].send_signal(signal.SIGKILL)
        for future in sent:
            future.result()
        with replicas.client("viewer") as viewer:
            # Reads keep working on the replica that is left, without errors.
            assert {viewer.get("/api/sentiments").status_code for _ in range(20)} == {200}
            health = viewer.get("/health").json()["services"]["ingest"]
    assert (health["status"], health["replicas_up"]) == ("up", 1)
    assert sorted(stored_client_ids(replicas, participant)) == sorted(
        r["client_id"] for r in records
    )
    # Both replicas stored records before the second one went down: posts sent alone
    # or relayed together (services.gateway.proxy.coalescing).
    for log in (
        replicas.config.log_dir / "ingest.log",
        replicas.config.data_dir.parent / "second" / "logs" / "ingest.log",
    ):
        text = log.read_text()
        assert "POST /api/sentiments 201" in text or "POST /api/sentiments/posts 200" in text
