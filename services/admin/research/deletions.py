"""Withdrawal with deletion: everything a participant of a study sent is deleted in
every service, and a signed receipt says what went, when and for whom.

The admin service asks the services through the gateway (with the admin token), one
step per service. Before a step deletes anything, what it is about to delete is
written down (counts; each vlog's id, sha256 and size), so the receipt is exact even
when the deletion is cut short and done again: calling the withdrawal again goes on
from the first step not done. Only when every step is done and nothing of the
participant is left in the study is the receipt signed and kept.

The signature is HMAC-SHA256 of the receipt's other fields in canonical JSON, with a
key derived from EMOGO_SECRET_KEY: anyone holding a receipt can have the server
confirm it (`POST /api/deletion-receipts/verify`), and a changed count, id or date
no longer verifies.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath

from services.admin.access import ADMIN_ONLY
from services.admin.deps import Settings
from services.admin.models import DeletionJob
from services.admin.research.journal import DeletionJournal
from services.admin.research.receipts import (
    SIGNATURE_ALGORITHM,
    DeletionReceipt,
    ReceiptCheck,
    check,
    sign,
)
from services.admin.settings import AdminSettings
from services.common.research.auth import credential_id
from services.common.research.pseudonyms import PseudonymEntry
from services.common.research.tokens import CACHE_SECONDS, REVOCATION_BOUND_SECONDS
from services.common.web.errors import NotFound, ServiceUnavailable
from services.common.web.openapi import documented_object, error_responses
from services.common.web.schemas import Principal
from services.common.web.timestamps import stored_now
from services.common.web.validation import read_record

STEPS = ("telemetry", "vlogs")
ALSO_DELETED = [
    "daily rollups, calendars and totals of the participant (the study's totals recounted)",
    "vlog previews and thumbnails",
    "unfinished resumable uploads",
    "the record of the pseudonyms viewers were shown",
]
REQUEST_SECONDS = 120.0
VLOGS_PER_PAGE = 1000


class ServiceSteps:
    """Each step's reading and deleting, through the gateway: of one participant of a
    study, or (`user_id` None) of the whole study."""

    def __init__(self, client: httpx.AsyncClient, study_id: str, user_id: str | None) -> None:
        self.client = client
        self.study_id = study_id
        self.user_id = user_id
        self.scope = {"study_id": study_id, **({"user_id": user_id} if user_id else {})}

    async def _call(self, method: str, path: str, **params: Any) -> httpx.Response:
        try:
            answer = await self.client.request(method, path, params=params or None)
        except httpx.HTTPError as problem:
            raise self._unavailable(type(problem).__name__) from None
        if answer.status_code >= 300:
            raise self._unavailable(f"{method} {path} answered {answer.status_code}")
        return answer

    @staticmethod
    def _unavailable(why: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            "The deletion could not be completed now; what was done is kept, and "
            "withdrawing the participant again with delete_data completes it",
            extra={"reason": why},
        )

    async def found(self, step: str) -> dict[str, Any]:
        """What the step is about to delete."""
        if step == "telemetry":
            counts = {}
            for kind, name in (("sentiments", "sentiments"), ("gps", "gps_fixes")):
                answer = await self._call("GET", f"/api/{kind}/count", **self.scope)
                counts[name] = answer.json()["count"]
            return counts
        files, cursor = [], None
        while True:
            params = {**self.scope, "limit": VLOGS_PER_PAGE}
            if cursor:
                params["cursor"] = cursor
            answer = await self._call("GET", "/api/vlogs", **params)
            files += [
                {"id": vlog["_id"], "sha256": vlog.get("sha256"), "bytes": vlog.get("file_size")}
                for vlog in answer.json()
            ]
            cursor = answer.headers.get("X-Next-Cursor")
            if not cursor:
                return {"vlog_files": files}

    async def delete(self, step: str) -> None:
        service = "telemetry" if step == "telemetry" else "vlogs"
        if self.user_id is None:
            await self._call("DELETE", f"/api/{service}/studies/{self.study_id}")
        else:
            await self._call(
                "DELETE", f"/api/{service}/participants/{self.user_id}", study_id=self.study_id
            )

    async def left(self) -> int:
        """Records and vlogs of the participant still stored in the study."""
        counts = await self.found("telemetry")
        return sum(counts.values()) + len((await self.found("vlogs"))["vlog_files"])


async def delete_data(
    settings: AdminSettings,
    study_id: str,
    user_id: str | None,
    principal: Principal,
    stopped_at: datetime,
) -> DeletionReceipt:
    """Deletes everything `user_id` sent in `study_id` (everything of the study when
    `user_id` is None), going on with a deletion that was cut short; returns its
    signed receipt. `stopped_at`: when their token was revoked (or the study closed)."""
    # Every service notices a revoked token within REVOCATION_BOUND_SECONDS and a
    # closed study within CACHE_SECONDS: once that has passed, nothing new can arrive
    # behind the deletion.
    bound = CACHE_SECONDS if user_id is None else REVOCATION_BOUND_SECONDS
    settled = stopped_at + timedelta(seconds=bound) - stored_now()
    if settled.total_seconds() > 0:
        await asyncio.sleep(settled.total_seconds())
    jobs = DeletionJob.get_pymongo_collection()
    job = await jobs.find_one({"study_id": study_id, "user_id": user_id, "state": "deleting"})
    if job is None:
        requester = {"credential_id": credential_id(principal), "role": str(principal.role)}
        job = new_job("rcpt_" + secrets.token_hex(10), study_id, user_id, requester, stored_now())
        job["_id"] = (await jobs.insert_one(job)).inserted_id
    return await run_deletion(settings, job)


def new_job(
    receipt_id: str,
    study_id: str,
    user_id: str | None,
    requested_by: dict[str, str],
    requested_at: datetime,
) -> dict[str, Any]:
    """A deletion job before its first step (a DeletionJob document)."""
    return {
        "receipt_id": receipt_id,
        "study_id": study_id,
        "user_id": user_id,
        "requested_by": requested_by,
        "requested_at": requested_at,
        "state": "deleting",
        "planned": {},
        "done_steps": [],
    }


async def run_deletion(settings: AdminSettings, job: dict[str, Any]) -> DeletionReceipt:
    """Does the steps of a deletion job not done yet, then signs and keeps its receipt,
    and writes it to the deletion journal. A job done again after a restore
    (`reapplying`: the receipt given the first time) keeps that first receipt."""
    jobs = DeletionJob.get_pymongo_collection()
    study_id, user_id = job["study_id"], job["user_id"]
    headers = {"Authorization": f"Bearer {settings.credentials.admin}"}
    async with httpx.AsyncClient(
        base_url=settings.gateway_url.rstrip("/"), headers=headers, timeout=REQUEST_SECONDS
    ) as client:
        steps = ServiceSteps(client, study_id, user_id)
        for step in STEPS:
            if step in job["done_steps"]:
                continue
            if step not in job["planned"]:
                # Written down before anything of this step is deleted.
                job["planned"][step] = await steps.found(step)
                await jobs.update_one(
                    {"_id": job["_id"]}, {"$set": {f"planned.{step}": job["planned"][step]}}
                )
            await steps.delete(step)
            await jobs.update_one({"_id": job["_id"]}, {"$addToSet": {"done_steps": step}})
            job["done_steps"].append(step)
        if await steps.left():
            raise ServiceUnavailable(
                "Records of the participant arrived while they were deleted; withdraw "
                "again with delete_data to delete them too"
            )
    # What viewers called them goes too: nothing is left to look it up for.
    whose = {"study_id": study_id, **({"user_id": user_id} if user_id is not None else {})}
    await PseudonymEntry.get_pymongo_collection().delete_many(whose)
    telemetry, vlogs = job["planned"]["telemetry"], job["planned"]["vlogs"]
    receipt: dict[str, Any] = {
        "receipt_id": job["receipt_id"],
        "study_id": study_id,
        "user_id": user_id,
        "requested_by": job["requested_by"],
        "requested_at": _instant(job["requested_at"]),
        "completed_at": _instant(stored_now()),
        "deleted": {
            "sentiments": telemetry["sentiments"],
            "gps_fixes": telemetry["gps_fixes"],
            "vlogs": len(vlogs["vlog_files"]),
            "vlog_files": vlogs["vlog_files"],
            "also": ALSO_DELETED,
        },
        "signature_algorithm": SIGNATURE_ALGORITHM,
    }
    receipt["signature"] = sign(receipt, settings.secret_keys[0])
    done: dict[str, Any] = {"state": "done", "completed_at": stored_now(), "receipt": receipt}
    if job.get("reapplying"):
        # The participant holds the first receipt; what this run found is kept beside it.
        done["receipt"] = job["reapplying"]
        done["reapplied"] = receipt
    await jobs.update_one({"_id": job["_id"]}, {"$set": done})
    await DeletionJournal(settings.deletion_journal).keep(done["receipt"])
    return msgspec.convert(done["receipt"], DeletionReceipt)


def _instant(value: datetime) -> str:
    """A time as receipts carry it (and as their signature covers it)."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReceiptController(Controller):
    """Deletion receipts: kept, listed, and checked against the server's key."""

    path = "/api/deletion-receipts"
    tags = ["studies"]
    guards = ADMIN_ONLY

    @get(
        "/{receipt_id:str}",
        operation_id="getDeletionReceipt",
        summary="A deletion receipt, as it was given when the deletion completed",
        responses=error_responses(401, 403, 404),
    )
    async def one(self, receipt_id: FromPath[str]) -> DeletionReceipt:
        job = await DeletionJob.get_pymongo_collection().find_one(
            {"receipt_id": receipt_id, "state": "done"}
        )
        if job is None:
            raise NotFound(f"No deletion receipt {receipt_id!r}")
        return msgspec.convert(job["receipt"], DeletionReceipt)

    @post(
        "/verify",
        operation_id="verifyDeletionReceipt",
        summary="Whether a receipt is one this server signed, unchanged",
        operation_class=documented_object(
            "A deletion receipt as this server gave it. Any object is answered: "
            "`valid` says whether it is one this server signed, unchanged."
        ),
        responses=error_responses(401, 403),
        status_code=200,
    )
    async def verify(self, settings: Settings, request: Request) -> ReceiptCheck:
        # Read by hand (docs/adr/0005): a body that is not JSON is a 400, never a 500,
        # and a receipt edited into another shape is still answered (as not valid).
        receipt = await read_record(request, dict[str, Any])
        return check(receipt, settings.secret_keys)
