"""Rate limits that hold across every process and replica of a service.

Counts live in MongoDB, one small document per key and minute, so two workers (or
two machines) behind one gateway refuse the same client at the same point. The
rate over the last minute is estimated as a sliding window from the current and
the previous fixed minute (the previous one weighted by how much of it still lies
within the last 60 s), which smooths the burst a plain fixed window allows at its
edges. A request is counted first and uncounted if it is refused, so concurrent
requests cannot all slip under the limit and refused ones do not extend the wait.
Enrolment's limits (per address, and wrong codes per study) are built from them.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import UTC, datetime, timedelta

from beanie import Document
from pymongo import IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.common.web.errors import TooManyRequests

WINDOW_SECONDS = 60
# Tries to count a request: the first of a window makes it, then counts.
COUNT_ATTEMPTS = 3


class RateWindow(Document):
    """Requests of one key (`<limit>:<client>`) in one fixed minute."""

    requests: int = 0
    # Removed by the TTL index once the window can no longer matter.
    expires_at: datetime

    class Settings:
        name = "rate_limits"
        indexes = [IndexModel([("expires_at", 1)], name="expire", expireAfterSeconds=0)]


class SharedRateLimit:
    """At most `per_minute` requests per key in any minute, across processes."""

    def __init__(self, name: str, per_minute: int, message: str) -> None:
        self.name = name
        self.per_minute = per_minute
        self.message = message

    async def count(self, key: str, now: float | None = None) -> None:
        """Counts one event of `key` (a failure, say) without checking any limit."""
        now = time.time() if now is None else now
        minute = int(now // WINDOW_SECONDS)
        expires = datetime.fromtimestamp((minute + 2) * WINDOW_SECONDS, UTC) + timedelta(minutes=1)
        await RateWindow.get_pymongo_collection().update_one(
            {"_id": f"{self.name}:{key}:{minute}"},
            {"$inc": {"requests": 1}, "$setOnInsert": {"expires_at": expires}},
            upsert=True,
        )

    async def rate(self, key: str, now: float | None = None) -> float:
        """The events of `key` over the last minute (the sliding estimate)."""
        now = time.time() if now is None else now
        minute = int(now // WINDOW_SECONDS)
        windows = RateWindow.get_pymongo_collection()
        ids = [f"{self.name}:{key}:{minute}", f"{self.name}:{key}:{minute - 1}"]
        found: dict[str, float] = {
            row["_id"]: row["requests"] async for row in windows.find({"_id": {"$in": ids}})
        }
        weight = 1 - (now - minute * WINDOW_SECONDS) / WINDOW_SECONDS
        return found.get(ids[0], 0) + found.get(ids[1], 0) * weight

    def refusal(self, retry_after: int = WINDOW_SECONDS) -> TooManyRequests:
        return TooManyRequests(self.message, headers={"Retry-After": str(retry_after)})

    async def check(self, key: str, now: float | None = None) -> str:
        """Counts one request of `key`, or refuses it (429, not counted) past the limit;
        returns the window it was counted in, for `release`."""
        now = time.time() if now is None else now
        minute = int(now // WINDOW_SECONDS)
        elapsed = now - minute * WINDOW_SECONDS
        windows = RateWindow.get_pymongo_collection()
        current_id = f"{self.name}:{key}:{minute}"
        expires = datetime.fromtimestamp((minute + 2) * WINDOW_SECONDS, UTC) + timedelta(minutes=1)
        current = await self._count_one(current_id, expires)
        previous = await windows.find_one({"_id": f"{self.name}:{key}:{minute - 1}"})
        earlier: int = previous["requests"] if previous else 0
        weight = 1 - elapsed / WINDOW_SECONDS
        if earlier * weight + current["requests"] <= self.per_minute:
            return current_id
        await self.release(current_id)
        raise TooManyRequests(
            self.message,
            headers={
                "Retry-After": str(self._retry_after(earlier, current["requests"] - 1, elapsed))
            },
        )

    async def _count_one(self, current_id: str, expires: datetime) -> dict:
        """The window after one more request, counted atomically. A window is made
        (at 0) apart from counting in it: concurrent upserts that return the document
        race to insert it, and the embedded database answers some of the losers with
        no document (though it counted them), so a request would not know its count."""
        windows = RateWindow.get_pymongo_collection()
        for _ in range(COUNT_ATTEMPTS):
            current: dict | None = await windows.find_one_and_update(
                {"_id": current_id},
                {"$inc": {"requests": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if current is not None:
                return current
            with contextlib.suppress(DuplicateKeyError):  # made by another request
                await windows.update_one(
                    {"_id": current_id},
                    {"$setOnInsert": {"requests": 0, "expires_at": expires}},
                    upsert=True,
                )
        raise self.refusal(retry_after=1)  # not counted: refused rather than let through

    async def release(self, window: str) -> None:
        """Takes back one request counted by `check` in `window`: it turned out not to
        be one the limit is for."""
        await RateWindow.get_pymongo_collection().update_one(
            {"_id": window, "requests": {"$gt": 0}}, {"$inc": {"requests": -1}}
        )

    def _retry_after(self, earlier: int, current: int, elapsed: float) -> int:
        """Seconds until one more request fits, if no other comes meanwhile."""
        if current >= self.per_minute:  # only the next minute frees room
            return max(1, math.ceil(WINDOW_SECONDS - elapsed))
        # earlier * (1 - (elapsed + wait) / W) + current + 1 <= per_minute
        room = (self.per_minute - current - 1) / earlier
        wait = WINDOW_SECONDS * (1 - room) - elapsed
        return max(1, math.ceil(wait - 1e-6))  # not a second more for rounding


class EnrolmentLimits:
    """How code guessing is limited, without a lock that a few addresses can trip for a
    whole class: every address has its own budget of attempts a minute, and an attempt
    whose code works is given back (a class enrolling from one classroom's network
    address, or an admin's script, is not guessing); wrong codes are also counted per
    study, and while a study gets more wrong codes than its budget, only addresses that
    sent a wrong code lately are held back (429). A phone with its valid code, from an
    address that has not guessed, still enrols.

    With 10-character codes of 32 symbols (50 bits), an attacker who brings A fresh
    addresses during an attack makes about A guesses per minute; each hits one of the
    study's P unused codes with probability P / 2**50."""

    def __init__(self, per_address: int, wrong_per_study: int) -> None:
        message = "Too many enrolment attempts; retry later"
        self.per_address = SharedRateLimit("enrol-address", per_address, message)
        self.wrong_per_study = SharedRateLimit("enrol-wrong-study", wrong_per_study, message)
        self.wrong_per_address = SharedRateLimit("enrol-wrong-address", per_address, message)

    async def hold_back_guessers(self, study_id: str, address: str) -> None:
        if await self.wrong_per_study.rate(study_id) <= self.wrong_per_study.per_minute:
            return
        if await self.wrong_per_address.rate(address) > 0:
            raise self.wrong_per_study.refusal()

    async def failed(self, study_id: str, address: str) -> None:
        await self.wrong_per_study.count(study_id)
        await self.wrong_per_address.count(address)
