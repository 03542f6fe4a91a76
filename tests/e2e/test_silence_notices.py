"""The daily notice of participants who stopped reporting, POSTed to a study's webhook:
a real HTTP receiver that fails twice gets the same notice a third time, once a day,
and the webhook's secret path is never shown."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from services.admin.research.notices import newly_stopped, retry_delay
from tests.conftest import SESSION_ENV, Stack, stack_of_its_own
from tests.support import wait_until


class Receiver:
    """A webhook receiver on a free port: answers 500 to the first `failures` POSTs."""

    def __init__(self, failures: int) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(json.loads(body))
                receiver.paths.append(self.path)
                status = 500 if len(receiver.received) <= failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# `stack` here is a stack of its own whose admin service checks for notices every
# second and retries quickly (every other stack checks at the default pace).
stack = stack_of_its_own(
    "emogo_notices",
    **SESSION_ENV,
    EMOGO_NOTICE_CHECK_SECONDS="1",
    EMOGO_NOTICE_RETRY_SECONDS="0.3",
)


@pytest.fixture
def receiver() -> Any:
    running = Receiver(failures=2)
    yield running
    running.close()


def _enrolled_token(stack: Stack, study_id: str, user_id: str) -> dict[str, str]:
    with stack.client("admin") as admin, stack.client() as phone:
        [issued] = admin.post(
            f"/api/studies/{study_id}/participants", json={"user_ids": [user_id]}
        ).json()["participants"]
        token = phone.post("/api/enrol", json={"study_id": study_id, "code": issued["code"]})
        return {"Authorization": f"Bearer {token.json()['token']}"}


def _study_with_a_quiet_participant(stack: Stack, webhook_url: str) -> str:
    """A study whose one participant last reported five days ago, with a webhook."""
    study_id = f"notices-{uuid.uuid4().hex[:8]}"
    with stack.client("admin") as admin:
        assert admin.post("/api/studies", json={"study_id": study_id, "name": "N"}).is_success
    headers = _enrolled_token(stack, study_id, "quiet")
    when = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    with stack.client() as phone:
        sent = phone.post(
            "/api/sentiments",
            json={"emotion": "calm", "intensity": 0.5, "timestamp": when},
            headers=headers,
        )
        assert sent.status_code == 201
    with stack.client("admin") as admin:
        changed = admin.patch(f"/api/studies/{study_id}", json={"webhook_url": webhook_url})
        assert changed.status_code == 200
    return study_id


def test_a_notice_is_retried_until_delivered_once_a_day(stack: Stack, receiver: Receiver) -> None:
    study_id = f"notices-{uuid.uuid4().hex[:8]}"
    with stack.client("admin") as admin:
        created = admin.post(
            "/api/studies",
            json={"study_id": study_id, "name": "Notices", "time_zone": "UTC"},
        )
        assert created.status_code == 201
    now = datetime.now(UTC)
    for user_id, days_ago in (("quiet", 5), ("busy", 1)):
        headers = _enrolled_token(stack, study_id, user_id)
        when = (now - timedelta(days=days_ago)).isoformat()
        with stack.client() as phone:
            sent = phone.post(
                "/api/sentiments",
                json={"user_id": user_id, "emotion": "calm", "intensity": 0.5, "timestamp": when},
                headers=headers,
            )
            assert sent.status_code == 201
    secret_path = f"/hook/{uuid.uuid4().hex}"
    with stack.client("admin") as admin:
        changed = admin.patch(
            f"/api/studies/{study_id}", json={"webhook_url": receiver.url + secret_path}
        )
        assert changed.status_code == 200
        # Only where notices go is shown: the rest of the URL is the receiver's secret.
        assert changed.json()["webhook"] == "http://127.0.0.1/…"
        assert secret_path not in changed.text
    with stack.client("viewer") as viewer:
        assert secret_path not in viewer.get("/api/studies").text

    wait_until(lambda: len(receiver.received) >= 3, 30, "the notice to be delivered")
    first, second, third = receiver.received[:3]
    assert first == second == third  # the same notice each time
    assert receiver.paths[0] == secret_path
    assert first["event"] == "participants_stopped_reporting"
    assert (first["study_id"], first["time_zone"]) == (study_id, "UTC")
    assert first["day"] == datetime.now(UTC).date().isoformat()
    [quiet] = first["newly_stopped"]
    assert quiet["user_id"] == "quiet"
    assert quiet["silent_days"] == 4
    assert quiet["last_sentiment"].startswith((now - timedelta(days=5)).date().isoformat())
    assert first["still_stopped"] == []

    with stack.client("admin") as admin:

        def delivered() -> bool:
            notices = admin.get(f"/api/studies/{study_id}/notices").json()
            return notices[0]["status"] == "delivered"

        wait_until(delivered, 10, "the notice to be marked delivered")
        [notice] = admin.get(f"/api/studies/{study_id}/notices").json()
        # Whether it was delivered, never what the receiver answered.
        refused = "not delivered: the receiver did not accept it"
        assert [a["outcome"] for a in notice["attempts"]] == [refused, refused, "delivered"]
        # A doubling delay after each failure.
        assert [a.get("retry_in_seconds") for a in notice["attempts"]] == [0.3, 0.6, None]
        assert notice["newly_stopped"] == ["quiet"]
        with stack.client("viewer") as viewer:
            assert viewer.get(f"/api/studies/{study_id}/notices").status_code == 403
    # Later checks send nothing more today: a study given a webhook only now gets its
    # notice from such a later check, and by then the first study's count still holds.
    later = _study_with_a_quiet_participant(stack, receiver.url + "/later")
    wait_until(lambda: "/later" in receiver.paths, 30, f"the notice of {later}")
    assert receiver.paths.count(secret_path) == 3


def test_only_those_not_in_the_last_notice_are_new() -> None:
    assert newly_stopped(["a", "b", "c"], ["b"]) == ["a", "c"]
    assert newly_stopped(["a"], ["a", "z"]) == []
    assert newly_stopped([], ["a"]) == []
    assert [retry_delay(n, 30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


def test_bad_webhook_urls_are_refused(admin: httpx.Client) -> None:
    study_id = f"hooks-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/studies", json={"study_id": study_id, "name": "H"}).status_code == 201
    for bad in ("ftp://example.org/x", "not a url", "javascript:alert(1)"):
        answer = admin.patch(f"/api/studies/{study_id}", json={"webhook_url": bad})
        assert answer.status_code in (400, 422)
        assert "webhook_url" in answer.text
    cleared = admin.patch(f"/api/studies/{study_id}", json={"webhook_url": ""})
    assert cleared.json()["webhook"] is None


def test_a_pseudonymous_studys_notice_names_pseudonyms(stack: Stack) -> None:
    """The webhook (a teaching team's channel) is told who stopped by pseudonym, one a
    TA can filter the export page by; the admin's notice list keeps real ids."""
    receiver = Receiver(failures=0)
    try:
        study_id = f"quiet-hidden-{uuid.uuid4().hex[:8]}"
        real = f"quiet.real.{uuid.uuid4().hex[:6]}"
        with stack.client("admin") as admin:
            created = admin.post(
                "/api/studies",
                json={"study_id": study_id, "name": "N", "time_zone": "UTC", "pseudonyms": True},
            )
            assert created.status_code == 201
        headers = _enrolled_token(stack, study_id, real)
        when = (datetime.now(UTC) - timedelta(days=5)).isoformat()
        with stack.client() as phone:
            body = {"emotion": "calm", "intensity": 0.5, "timestamp": when}
            assert phone.post("/api/sentiments", json=body, headers=headers).status_code == 201
        with stack.client("admin") as admin:
            admin.patch(f"/api/studies/{study_id}", json={"webhook_url": receiver.url + "/h"})
            wait_until(lambda: len(receiver.received) >= 1, 30, "the notice to be delivered")
            [named] = admin.get(f"/api/studies/{study_id}/participants").json()
            assert admin.get(f"/api/studies/{study_id}/notices").json()[0]["newly_stopped"] == [
                real
            ]
        [stopped] = receiver.received[0]["newly_stopped"]
        assert stopped["user_id"] == named["pseudonym"]
        assert real not in json.dumps(receiver.received[0])
        with stack.client("viewer") as viewer:
            found = viewer.get("/api/sentiments", params={"user_id": named["pseudonym"]})
            assert [r["user_id"] for r in found.json()] == [named["pseudonym"]]
    finally:
        receiver.close()


guarded_stack = stack_of_its_own("emogo_webhooks")
INTERNAL = [
    "http://127.0.0.1:8003/api/v1/list_users",
    "http://localhost/x",
    "http://[::1]:8000/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://0x7f000001/x",
    "http://2130706433/x",
    "http://127.1/x",
    "http://0177.0.0.1/x",
    "http://0.0.0.0/x",
    "http://10.0.0.7/x",
    "http://192.168.1.1/x",
    "http://[fe80::1]/x",
]


def test_webhooks_to_internal_addresses_are_refused(guarded_stack: Stack) -> None:
    """Every spelling of loopback, link-local, private and unspecified addresses is
    refused when set (422 naming webhook_url), so no notice goes there."""
    study_id = f"ssrf-{uuid.uuid4().hex[:8]}"
    with guarded_stack.client("admin") as admin:
        made = admin.post("/api/studies", json={"study_id": study_id, "name": "S"})
        assert made.status_code == 201
        for url in INTERNAL:
            answer = admin.patch(f"/api/studies/{study_id}", json={"webhook_url": url})
            assert answer.status_code == 422, (url, answer.text)
            [problem] = answer.json()["detail"]["errors"]
            assert problem["field"] == "webhook_url"
            assert "public address" in problem["reason"]
            created = admin.post(
                "/api/studies", json={"study_id": f"{study_id}-x", "name": "S", "webhook_url": url}
            )
            assert created.status_code == 422, (url, created.text)
        assert admin.get(f"/api/studies/{study_id}").json()["webhook"] is None
        public = admin.patch(
            f"/api/studies/{study_id}", json={"webhook_url": "https://93.184.215.14/hook"}
        )
        assert public.status_code == 200, public.text
