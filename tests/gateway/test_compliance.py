"""The compliance report through the gateway, against numbers worked out by hand:
per participant and local day of the study (Europe/Berlin, across both daylight-
saving changes), rates against the study's expectations, who stopped reporting, the
CSV, and who may read it."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import Stack
from tests.media.conftest import h264_video
from tests.support import REPO, bearer, enrolled, viewer_in_chromium

BERLIN = ZoneInfo("Europe/Berlin")
ARTIFACTS = REPO / "test-artifacts"


def at(day: date, hour: int, minute: int = 0) -> str:
    """A Berlin wall-clock time as a UTC instant."""
    local = datetime.combine(day, time(hour, minute), tzinfo=BERLIN)
    return local.astimezone(UTC).isoformat().replace("+00:00", "Z")


def send(stack: Stack, headers: dict[str, str], kind: str, records: list[dict]) -> None:
    with stack.client() as phone:
        answer = phone.post(f"/api/{kind}/batch", json=records, headers=headers)
        assert answer.status_code in (200, 201), answer.text
        assert answer.json()["stored"] == len(records)


@pytest.fixture(scope="module")
def study(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    study_id = f"cockpit-{uuid.uuid4().hex[:8]}"
    with stack.client("admin") as admin:
        created = admin.post(
            "/api/studies",
            json={
                "study_id": study_id,
                "name": "Cockpit",
                "time_zone": "Europe/Berlin",
                "expectations": {
                    "sentiments_per_day": 2,
                    "gps_hours_per_day": 4,
                    "vlogs_per_week": 1,
                },
                "silent_after_days": 2,
            },
        )
        assert created.status_code == 201, created.text
    tokens = enrolled(stack, study_id, ["P1", "P2", "P3", "DST"])
    today = datetime.now(BERLIN).date()
    days = [today - timedelta(days=n) for n in range(5, 0, -1)]  # T-5 .. T-1
    # P1: everything expected, every day: 2 sentiments, fixes in 4 hours; a vlog.
    send(
        stack,
        tokens["P1"],
        "sentiments",
        [
            {"user_id": "P1", "emotion": "happy", "intensity": 0.5, "timestamp": at(d, h)}
            for d in days
            for h in (9, 20)
        ],
    )
    send(
        stack,
        tokens["P1"],
        "gps",
        [
            {"user_id": "P1", "latitude": 52.5, "longitude": 13.4, "timestamp": at(d, h, m)}
            for d in days
            for h in (8, 12, 16, 23)
            for m in (5, 35)
        ],
    )
    video = h264_video(tmp_path_factory.mktemp("cockpit") / "v.mp4", seed=7)
    with stack.client() as phone:
        uploaded = phone.post(
            "/api/vlogs/upload",
            data={"user_id": "P1", "timestamp": at(days[3], 18)},
            files={"video": ("v.mp4", video, "video/mp4")},
            headers=tokens["P1"],
        )
        assert uploaded.status_code == 201, uploaded.text
    # P2: one sentiment on each of the first two days, then nothing.
    send(
        stack,
        tokens["P2"],
        "sentiments",
        [
            {"user_id": "P2", "emotion": "sad", "intensity": 0.2, "timestamp": at(d, 23, 30)}
            for d in days[:2]
        ],
    )
    # P3: started today.
    send(
        stack,
        tokens["P3"],
        "sentiments",
        [{"user_id": "P3", "emotion": "calm", "intensity": 0.9, "timestamp": at(today, 0, 10)}],
    )
    # DST: 2026-03-29 has 23 hours in Berlin, 2026-10-25 has 25; a fix every hour of
    # each, and sentiments just after local midnight, which is the UTC day before.
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    fixes = []
    for day in (spring, autumn):
        start = datetime.combine(day, time(0), tzinfo=BERLIN).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=BERLIN).astimezone(UTC)
        instant = start + timedelta(minutes=20)
        while instant < end:
            fixes.append(
                {
                    "user_id": "DST",
                    "latitude": 52.5,
                    "longitude": 13.4,
                    "timestamp": instant.isoformat(),
                }
            )
            instant += timedelta(hours=1)
    send(stack, tokens["DST"], "gps", fixes)
    send(
        stack,
        tokens["DST"],
        "sentiments",
        [
            {"user_id": "DST", "emotion": "calm", "intensity": 0.4, "timestamp": at(d, 0, 30)}
            for d in (spring, spring, autumn)
        ],
    )
    return {"study_id": study_id, "today": today, "days": days}


def report(client: httpx.Client, study_id: str) -> dict:
    answer = client.get("/api/telemetry/compliance", params={"study_id": study_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rates_silence_and_order_match_the_hand_count(viewer: httpx.Client, study: dict) -> None:
    found = report(viewer, study["study_id"])
    [summary] = found["studies"]
    assert summary["time_zone"] == "Europe/Berlin"
    assert summary["today"] == study["today"].isoformat()
    assert summary["stopped"] == ["DST", "P2"]
    people = {row["user_id"]: row for row in found["participants"]}
    # Those who stopped come first, longest silent first.
    assert [row["user_id"] for row in found["participants"]] == ["DST", "P2", "P1", "P3"]

    first = people["P1"]
    days = study["days"]
    assert (first["first_day"], first["last_day"]) == (days[0].isoformat(), days[-1].isoformat())
    assert first["days_counted"] == 5
    assert first["silent_days"] == 0
    assert first["stopped"] is False
    assert first["sentiments"] == {"delivered": 10.0, "expected": 10.0, "rate": 1.0}
    assert first["gps_hours"] == {"delivered": 20.0, "expected": 20.0, "rate": 1.0}
    assert first["vlogs"] == {"delivered": 1.0, "expected": round(5 / 7, 3), "rate": 1.0}
    assert first["rate"] == 1.0
    assert first["days"][days[0].isoformat()] == {"sentiments": 2, "gps_hours": 4}
    assert first["days"][days[3].isoformat()] == {"sentiments": 2, "gps_hours": 4, "vlogs": 1}
    assert first["last_vlog"] is not None
    assert first["last_gps_fix"] is not None

    second = people["P2"]
    # Last record on T-4: T-3, T-2 and T-1 passed without one.
    assert second["silent_days"] == 3
    assert second["stopped"] is True
    assert second["days_counted"] == 5
    assert second["sentiments"] == {"delivered": 2.0, "expected": 10.0, "rate": 0.2}
    assert second["gps_hours"] == {"delivered": 0.0, "expected": 20.0, "rate": 0.0}
    assert second["vlogs"]["rate"] == 0.0
    assert second["rate"] == round(0.2 / 3, 4)
    assert second["last_gps_fix"] is None
    assert second["last_vlog"] is None

    third = people["P3"]
    assert third["days_counted"] == 0
    assert third["silent_days"] == 0
    assert third["sentiments"] == {"delivered": 0.0, "expected": 0.0, "rate": None}
    assert third["rate"] is None


def test_days_are_the_study_s_local_days_across_daylight_saving(
    viewer: httpx.Client, study: dict
) -> None:
    dst = {row["user_id"]: row for row in report(viewer, study["study_id"])["participants"]}["DST"]
    # Sentiments at 00:30 Berlin time were sent on the UTC day before; fixes every hour
    # of a 23-hour and a 25-hour day.
    assert dst["days"] == {
        "2026-03-29": {"sentiments": 2, "gps_hours": 23},
        "2026-10-25": {"sentiments": 1, "gps_hours": 25},
    }
    timeline = viewer.get(
        "/api/telemetry/timeline", params={"study_id": study["study_id"], "user_id": "DST"}
    )
    assert [(p["day"], p["count"]) for p in timeline.json()] == [
        ("2026-03-29", 2),
        ("2026-10-25", 1),
    ]


def test_csv_has_one_row_per_participant_in_the_same_order(
    viewer: httpx.Client, study: dict
) -> None:
    answer = viewer.get("/api/telemetry/compliance.csv", params={"study_id": study["study_id"]})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["user_id"] for row in rows] == ["DST", "P2", "P1", "P3"]
    second = rows[1]
    assert (second["stopped"], second["silent_days"], second["sentiments_rate"]) == (
        "True",
        "3",
        "0.2",
    )
    assert rows[3]["rate"] == ""


def test_compliance_needs_a_reader(stack: Stack, device: httpx.Client, study: dict) -> None:
    with stack.client() as anonymous:
        assert anonymous.get("/api/telemetry/compliance").status_code == 401
    assert device.get("/api/telemetry/compliance").status_code == 403
    bad = device.get("/api/telemetry/compliance", params={"study_id": "Not a study!"})
    assert bad.status_code in (403, 422)


@pytest.mark.browser
def test_the_cockpit_in_a_real_browser(stack: Stack, viewer: httpx.Client, study: dict) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    study_id = study["study_id"]
    api = {row["user_id"]: row for row in report(viewer, study_id)["participants"]}
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as driver:
        browser, page = viewer_in_chromium(driver)

        def cell(user_id: str, day: str) -> dict:
            found = page.locator(f'.heatmap tr[data-user-id="{user_id}"] td[data-day="{day}"]')
            return {
                "sentiments": int(found.get_attribute("data-sentiments")),
                "gps_hours": int(found.get_attribute("data-gps-hours")),
                "vlogs": int(found.get_attribute("data-vlogs")),
                "colour": found.evaluate("cell => getComputedStyle(cell).backgroundColor"),
            }

        def expected(user_id: str, day: str) -> dict:
            counts = api[user_id]["days"].get(day, {})
            return {k: counts.get(k, 0) for k in ("sentiments", "gps_hours", "vlogs")}

        # The spring change of 2026, chosen with the page's own date filters.
        page.goto(f"{stack.gateway}/export?study_id={study_id}&since=2026-03-28&until=2026-03-31")
        shown_days = page.locator(".heatmap thead th[title]")
        assert shown_days.evaluate_all("cells => cells.map(c => c.title)") == [
            "2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"
        ]  # fmt: skip
        assert page.locator('.heatmap tr[data-user-id="DST"] td.before').count() == 1  # 03-28
        for day in ("2026-03-29", "2026-03-30", "2026-03-31"):
            found = cell("DST", day)
            assert {k: found[k] for k in ("sentiments", "gps_hours", "vlogs")} == expected(
                "DST", day
            )
        assert cell("DST", "2026-03-29")["gps_hours"] == 23

        # The default view: up to today, who stopped first.
        page.goto(f"{stack.gateway}/export?study_id={study_id}")
        listed = page.locator(".stopped-list tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.userId)"
        )
        assert listed == ["DST", "P2"]
        rows = page.locator(".heatmap tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.userId)"
        )
        assert rows == ["DST", "P2", "P1", "P3"]
        autumn = cell("DST", "2026-10-25")
        assert (autumn["sentiments"], autumn["gps_hours"]) == (1, 25)
        for day in [d.isoformat() for d in study["days"]]:
            found = cell("P1", day)
            assert {k: found[k] for k in ("sentiments", "gps_hours", "vlogs")} == expected(
                "P1", day
            )
        # The measure colours the cells: one sentiment of two expected is a lighter cell
        # than 25 hours of GPS of 4 expected.
        by_sentiments = autumn["colour"]
        page.check('input[name="measure"][value="g"]')
        assert cell("DST", "2026-10-25")["colour"] == "rgb(8, 48, 107)"
        assert by_sentiments != "rgb(8, 48, 107)"
        # Every number is also in the cell's text and tooltip.
        first_day = study["days"][0].isoformat()
        found = page.locator(f'.heatmap tr[data-user-id="P1"] td[data-day="{first_day}"]')
        title = found.get_attribute("title")
        assert title.startswith(f"P1, {first_day}: ")
        assert found.inner_text() == "2 sentiments, 4 h with GPS, 0 vlogs"
        assert "2 sentiments, 4 h with GPS" in title
        rates = page.locator("#people ~ div table tbody tr").evaluate_all(
            "rows => Object.fromEntries(rows.map(r => [r.querySelector('th').innerText, "
            "r.querySelector('[data-rate]').innerText]))"
        )
        assert rates["P1"] == "100 %"
        assert rates["P2"] == f"{100 * api['P2']['rate']:.0f} %"
        # One colour per emotion on both charts.
        colours = page.evaluate(
            """() => {
                const seen = {};
                for (const e of document.querySelectorAll('[data-emotion]')) {
                    const colour = e.tagName === 'polyline' ? e.getAttribute('stroke')
                                                            : e.getAttribute('fill');
                    (seen[e.dataset.emotion] ||= new Set()).add(colour);
                }
                return Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, [...v]]));
            }"""
        )
        assert set(colours) >= {"happy", "sad", "calm"}
        assert all(len(shades) == 1 for shades in colours.values())
        assert len(page.locator('rect[data-emotion="happy"]').all()) == 1
        assert len(page.locator('polyline[data-emotion="happy"]').all()) == 1
        page.screenshot(path=str(ARTIFACTS / "cockpit.png"), full_page=True)
        browser.close()


def test_exports_stay_utc_with_the_study_s_local_date(viewer: httpx.Client, study: dict) -> None:
    params = {"study_id": study["study_id"], "user_id": "DST"}
    answer = viewer.get("/api/export/sentiments.csv", params=params)
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert [(r["study_id"], r["timestamp"][:16], r["local_date"]) for r in rows] == [
        (study["study_id"], "2026-03-28T23:30", "2026-03-29"),
        (study["study_id"], "2026-03-28T23:30", "2026-03-29"),
        (study["study_id"], "2026-10-24T22:30", "2026-10-25"),
    ]
    lines = viewer.get("/api/export/gps.ndjson", params=params).text.splitlines()
    first = json.loads(lines[0])
    assert first["timestamp"].startswith("2026-03-28T23:20")  # 00:20 in Berlin
    assert first["local_date"] == "2026-03-29"


def test_a_study_viewer_lists_its_own_study_s_participants(stack: Stack, study: dict) -> None:
    """The compliance report names enrolled participants who never sent anything, so a
    TA's token reads its studies' participant lists (never their codes)."""
    with stack.client("admin") as admin:
        minted = admin.post(
            "/api/viewer-tokens", json={"name": "TA cockpit", "study_ids": [study["study_id"]]}
        )
        assert minted.status_code == 201, minted.text
        other = admin.post(
            "/api/studies", json={"study_id": f"other-{uuid.uuid4().hex[:8]}", "name": "O"}
        )
    ta = {"Authorization": f"Bearer {minted.json()['token']}"}
    with stack.client() as client:
        listed = client.get(f"/api/studies/{study['study_id']}/participants", headers=ta)
        assert listed.status_code == 200
        assert {p["user_id"] for p in listed.json()} == {"P1", "P2", "P3", "DST"}
        assert "code_digest" not in listed.text
        elsewhere = client.get(f"/api/studies/{other.json()['study_id']}/participants", headers=ta)
        assert elsewhere.status_code == 404
        device = client.get(
            f"/api/studies/{study['study_id']}/participants", headers=bearer("device")
        )
        assert device.status_code == 403
        # The TA's own compliance report covers the study.
        own = client.get("/api/telemetry/compliance", headers=ta).json()
        assert {row["user_id"] for row in own["participants"]} == {"P1", "P2", "P3", "DST"}
