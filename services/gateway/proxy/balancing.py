"""Replicas of a service: which to ask next, and when asking another is safe.

`EMOGO_<SERVICE>_URL` may list several URLs (replicas on other machines or
containers). Requests take them in turn; a replica that refused a connection is
passed over for `cooldown` seconds (health-aware), and tried only when every
other one failed too.

Retrying is safe when the request certainly did not reach a service (the
connection was refused or never made), for any method; and for idempotent methods
(RFC 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE) also when the connection broke
before an answer came, as when a worker dies mid-request. A POST whose fate is
unknown is never sent twice: its client decides (phones resend with a client id,
which the service de-duplicates).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
COOLDOWN_SECONDS = 5.0
Answer = TypeVar("Answer")


def never_reached_service(exc: BaseException) -> bool:
    """Refused, unreachable, or no connection free or made in time: nothing was sent."""
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def may_retry(method: str, exc: aiohttp.ClientError) -> bool:
    """Whether sending the same request again cannot apply it twice."""
    if never_reached_service(exc):
        return True
    # Closed or reset by the service (a worker that died), not a timeout: a slow
    # service is not asked twice.
    broken_before_answer = isinstance(exc, aiohttp.ServerDisconnectedError) or (
        isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, TimeoutError)
    )
    return method in IDEMPOTENT_METHODS and broken_before_answer


class Replicas:
    """The base URLs of one service, in turn, those that failed lately last."""

    def __init__(self, urls: tuple[str, ...], cooldown: float = COOLDOWN_SECONDS) -> None:
        self.urls = urls
        self.cooldown = cooldown
        self._turn = itertools.cycle(range(len(urls)))
        self._down_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Replicas({', '.join(self.urls)})"

    def order(self) -> list[str]:
        """Every replica once: the next in turn first, replicas that failed lately last.

        With a single replica it is listed twice, so that an idempotent request that
        met a dying worker gets one more try (another worker then answers)."""
        start = next(self._turn)
        turn = [*self.urls[start:], *self.urls[:start]]
        if len(turn) == 1:
            return turn * 2
        now = time.monotonic()
        up = [url for url in turn if self._down_until.get(url, 0.0) <= now]
        return up + [url for url in turn if url not in up]

    def failed(self, url: str) -> None:
        self._down_until[url] = time.monotonic() + self.cooldown

    def answered(self, url: str) -> None:
        self._down_until.pop(url, None)

    async def send(
        self,
        method: str,
        attempt: Callable[[str], Awaitable[Answer]],
        *,
        replayable: bool = True,
        on_retry: Callable[[aiohttp.ClientError], None] | None = None,
    ) -> Answer:
        """`attempt(base URL)` on the replicas in turn until one answers or a failure
        may not be retried (then it is raised). A body that can be sent once only
        (`replayable=False`) is never sent again."""
        bases = self.order()
        for number, base in enumerate(bases, start=1):
            try:
                answer = await attempt(base)
            except aiohttp.ClientError as exc:
                if never_reached_service(exc):
                    self.failed(base)
                if replayable and number < len(bases) and may_retry(method, exc):
                    if on_retry is not None:
                        on_retry(exc)
                    continue
                raise
            self.answered(base)
            return answer
        raise AssertionError("unreachable: the last attempt returns or raises")
