"""Daily notices of participants who stopped reporting, POSTed as JSON to each study's
webhook (RADAR-base's alert when a device goes quiet, for a course's TAs).

Once per local day of a study (at the first check after its midnight), the study's
compliance report is read from the gateway, the one place that composes it (services.
gateway.compliance), and a notice is recorded with who has stopped reporting since the
last notice. One notice per study and day: a unique key decides which worker makes it.
Delivery is retried with a doubling delay until the receiver answers 2xx or the
attempts run out; each attempt is kept on the notice (`GET /api/studies/{id}/notices`).
A notice nobody newly stopped in is recorded and not sent.

A webhook URL often holds the receiver's secret (Slack's and Teams' do): it is never
logged nor shown, only its host.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from litestar import Controller, get
from litestar.params import FromPath
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.admin.access import ADMIN_ONLY
from services.admin.models import SilenceNotice
from services.admin.research import webhooks
from services.admin.research.schemas import NoticeView
from services.admin.settings import AdminSettings
from services.common.research.localdays import local_today, zone_named
from services.common.research.protections import Protections, study_pseudonyms
from services.common.research.studies import Study, StudyStatus
from services.common.runtime.periodic import Periodic
from services.common.web.errors import NotFound
from services.common.web.openapi import error_responses
from services.common.web.timestamps import stored_now

logger = logging.getLogger("emogo.admin")

# How long a worker may take over one delivery before another may try it.
CLAIM_SECONDS = 60.0
DELIVERY_TIMEOUT_SECONDS = 10.0
EVENT = "participants_stopped_reporting"


def newly_stopped(stopped: list[str], before: list[str]) -> list[str]:
    """Those who stopped reporting and were not yet in the previous notice."""
    known = set(before)
    return [user_id for user_id in stopped if user_id not in known]


def retry_delay(failures: int, first: float) -> float:
    """Seconds before the next attempt after `failures` failed ones: doubling."""
    return first * 2 ** (failures - 1)


# A delivery's outcomes besides "delivered".
NOT_ALLOWED = "not delivered: the address is not public"
NOT_REACHED = "not delivered: the receiver was not reached"
NOT_ACCEPTED = "not delivered: the receiver did not accept it"


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


class NoticeSender:
    """Checks the studies with a webhook, makes each day's notice and delivers it."""

    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False)
        # Writes down the pseudonyms a pseudonymous study's notice names.
        self._protections = Protections()
        self._periodic = Periodic(
            "silence notices", self.step, settings.notice_check_seconds, logger
        )

    async def step(self) -> None:
        now = stored_now()
        studies = Study.get_pymongo_collection().find(
            {"status": StudyStatus.ACTIVE.value, "webhook_url": {"$nin": [None, ""]}}
        )
        async for study in studies:
            await self._make_notice(study, now)
        while await self._deliver_one(stored_now()):
            pass

    async def _make_notice(self, study: dict[str, Any], now: datetime) -> None:
        zone = study.get("time_zone") or self.settings.display_timezone
        day = local_today(now, zone_named(zone))
        notices = SilenceNotice.get_pymongo_collection()
        if await notices.find_one({"study_id": study["study_id"], "day": day}, {"_id": 1}):
            return
        report = await self._compliance(study["study_id"])
        if report is None:  # the gateway did not answer: the next check tries again
            return
        stopped = [row for row in report["participants"] if row["stopped"]]
        previous = await notices.find_one(
            {"study_id": study["study_id"], "day": {"$lt": day}}, sort=[("day", -1)]
        )
        ids = [row["user_id"] for row in stopped]
        new = newly_stopped(ids, previous["stopped"] if previous else [])
        # A pseudonymous study's webhook (a teaching team's channel) is told pseudonyms.
        shown = await study_pseudonyms(study, ids, self._protections) or {u: u for u in ids}
        payload = {
            "event": EVENT,
            "study_id": study["study_id"],
            "study_name": study["name"],
            "day": day,
            "time_zone": zone,
            "silent_after_days": study.get("silent_after_days"),
            "newly_stopped": [
                {
                    "user_id": shown[row["user_id"]],
                    **{
                        key: row[key]
                        for key in ("silent_days", "last_sentiment", "last_gps_fix", "last_vlog")
                    },
                }
                for row in stopped
                if row["user_id"] in new
            ],
            "still_stopped": [shown[user_id] for user_id in ids if user_id not in new],
        }
        try:
            await notices.insert_one(
                {
                    "study_id": study["study_id"],
                    "day": day,
                    "stopped": ids,
                    "newly_stopped": new,
                    "payload": payload,
                    "status": "pending" if new else "nothing",
                    "attempts": [],
                    "next_attempt_at": now if new else None,
                    "claimed_until": None,
                    "created_at": now,
                }
            )
        except DuplicateKeyError:  # another worker made it
            return
        logger.info(
            "silence notice made",
            extra={"study_id": study["study_id"], "day": day, "newly_stopped": len(new)},
        )

    async def _compliance(self, study_id: str) -> dict[str, Any] | None:
        url = f"{self.settings.gateway_url.rstrip('/')}/api/telemetry/compliance"
        headers = {"Authorization": f"Bearer {self.settings.credentials.admin}"}
        try:
            answer = await self._client.get(url, params={"study_id": study_id}, headers=headers)
        except httpx.HTTPError as problem:
            logger.warning("compliance not read", extra={"error": type(problem).__name__})
            return None
        if answer.status_code != 200:
            logger.warning("compliance not read", extra={"status": answer.status_code})
            return None
        return answer.json()

    async def _deliver_one(self, now: datetime) -> bool:
        """Delivers one due notice, if any; False when none is due."""
        notices = SilenceNotice.get_pymongo_collection()
        notice = await notices.find_one_and_update(
            {
                "status": "pending",
                "next_attempt_at": {"$lte": now},
                "$or": [{"claimed_until": None}, {"claimed_until": {"$lte": now}}],
            },
            {"$set": {"claimed_until": now + timedelta(seconds=CLAIM_SECONDS)}},
            return_document=ReturnDocument.AFTER,
        )
        if notice is None:
            return False
        study = await Study.get_pymongo_collection().find_one({"study_id": notice["study_id"]})
        url = (study or {}).get("webhook_url")
        outcome = await self._post(url, notice["payload"]) if url else "no webhook any more"
        failures = len(notice["attempts"]) + (outcome != "delivered")
        attempt: dict[str, Any] = {"at": now, "outcome": outcome}
        change: dict[str, Any] = {"claimed_until": None}
        if outcome == "delivered":
            change["status"] = "delivered"
        elif url is None or failures >= self.settings.notice_attempts:
            change["status"] = "failed"
            logger.warning(
                "silence notice not delivered",
                extra={"study_id": notice["study_id"], "host": _host(url or ""), "last": outcome},
            )
        else:
            delay = retry_delay(failures, self.settings.notice_retry_seconds)
            attempt["retry_in_seconds"] = delay
            change["next_attempt_at"] = stored_now() + timedelta(seconds=delay)
        await notices.update_one(
            {"_id": notice["_id"]}, {"$set": change, "$push": {"attempts": attempt}}
        )
        return True

    async def _post(self, url: str, payload: dict[str, Any]) -> str:
        """The delivery's outcome, in words that say whether it was delivered and never
        what the receiver answered or how it failed (a webhook must not become a way
        to probe what the server can reach)."""
        if not await webhooks.may_deliver(url, self.settings.webhook_allow_private):
            return NOT_ALLOWED
        try:
            # Redirects are not followed: the next address would not have been checked.
            answer = await self._client.post(
                url, json=payload, headers={"User-Agent": "EmoGo-notices/1"}
            )
        except httpx.HTTPError:
            return NOT_REACHED
        return "delivered" if answer.is_success else NOT_ACCEPTED

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        await self._client.aclose()


class NoticeController(Controller):
    """A study's daily notices and how their delivery went, for the admin."""

    path = "/api/studies/{study_id:str}/notices"
    tags = ["studies"]
    guards = ADMIN_ONLY

    @get(
        "/",
        operation_id="listSilenceNotices",
        summary="The study's daily notices of participants who stopped reporting, newest first",
        responses=error_responses(401, 403, 404),
    )
    async def listing(self, study_id: FromPath[str]) -> list[NoticeView]:
        if await Study.get_pymongo_collection().find_one({"study_id": study_id}) is None:
            raise NotFound(f"No study {study_id!r}")
        found = SilenceNotice.get_pymongo_collection().find({"study_id": study_id})
        return [
            NoticeView(
                day=notice["day"],
                status=notice["status"],
                newly_stopped=notice["newly_stopped"],
                stopped=notice["stopped"],
                attempts=notice["attempts"],
                payload=notice["payload"],
            )
            async for notice in found.sort("day", -1).limit(366)
        ]
