"""The compliance report as a pure computation, against numbers worked out by hand:
enrolled participants who never sent anything, late starters, withdrawn participants
and data sent without enrolling."""

from __future__ import annotations

from datetime import UTC, datetime

from services.gateway.exports.compliance import as_csv, report

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 18:00 in Taipei, 2026-11-30
STUDY = {
    "study_id": "s1",
    "days_time_zone": "Asia/Taipei",
    "expectations": {"sentiments_per_day": 2, "gps_hours_per_day": None, "vlogs_per_week": None},
    "silent_after_days": 2,
}


def enrolled(user_id: str, when: str, status: str = "active") -> dict:
    return {"user_id": user_id, "status": status, "created_at": when, "enrolled_at": when}


def activity(user_id: str, days: dict, last: str, study_id: str = "s1") -> dict:
    return {
        "study_id": study_id,
        "user_id": user_id,
        "days": days,
        "last_sentiment": last,
        "last_gps_fix": None,
    }


def test_enrolment_days_silence_and_withdrawal() -> None:
    found = report(
        [STUDY],
        [
            # Enrolled three days ago; one sentiment yesterday (Taipei).
            activity("late", {"2026-11-29": {"sentiments": 1}}, "2026-11-29T03:00:00Z"),
            # Withdrew after a week of nothing since the 20th.
            activity("gone", {"2026-11-20": {"sentiments": 2}}, "2026-11-20T03:00:00Z"),
            # Sent with a global token: never enrolled.
            activity("anon", {"2026-11-28": {"sentiments": 3}}, "2026-11-28T03:00:00Z"),
        ],
        [],
        {
            "s1": [
                # 2026-11-25T20:00Z is the 26th in Taipei.
                enrolled("never", "2026-11-25T20:00:00Z"),
                enrolled("late", "2026-11-27T01:00:00Z"),
                enrolled("gone", "2026-11-19T01:00:00Z", status="withdrawn"),
            ]
        },
        NOW,
        "UTC",
    )
    people = {row.user_id: row for row in found.participants}

    never = people["never"]
    assert (never.enrolled_on, never.first_day, never.last_day) == (
        "2026-11-26",
        "2026-11-26",
        None,
    )
    assert never.silent_days == 4  # the 26th, 27th, 28th and 29th
    assert never.stopped is True
    assert never.days_counted == 4
    assert (never.sentiments.delivered, never.sentiments.expected, never.sentiments.rate) == (
        0.0,
        8.0,
        0.0,
    )

    late = people["late"]
    assert (late.first_day, late.last_day, late.days_counted) == ("2026-11-27", "2026-11-29", 3)
    assert late.silent_days == 0
    assert late.stopped is False
    assert late.sentiments.rate == round(1 / 6, 4)

    gone = people["gone"]
    assert gone.status == "withdrawn"
    assert gone.silent_days == 9
    assert gone.stopped is False  # not expected to report any more

    anon = people["anon"]
    assert (anon.enrolled_on, anon.first_day, anon.status) == (None, "2026-11-28", "active")

    assert found.studies[0].stopped == ["never"]
    assert found.participants[0].user_id == "never"  # who stopped comes first
    lines = as_csv(found).decode().splitlines()
    assert lines[0].startswith("study_id,user_id,status,time_zone,enrolled_on,first_day,last_day")
    assert lines[1].startswith("s1,never,active,Asia/Taipei,2026-11-26,2026-11-26,,")
