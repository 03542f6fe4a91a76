"""What a token the admin service issued proves, for the gateway, which has no database."""

from __future__ import annotations

import aiohttp
import msgspec

from services.common.research.tokens import CACHE_SECONDS, Remembered, TokenKind, token_digest
from services.common.web.errors import ServiceUnavailable
from services.gateway.proxy.relay import ReverseProxy
from services.gateway.proxy.upstream import RETRY_SECONDS


def _unavailable(kind: type[ServiceUnavailable]) -> ServiceUnavailable:
    return kind(
        "The admin service is needed to check this credential and is unavailable",
        extra={"service": "admin"},
        headers={"Retry-After": str(RETRY_SECONDS)},
    )


class CredentialCheckFailed(ServiceUnavailable):
    """The admin service was reached but could not look the token up (it answered 5xx,
    or not in time): its database, which the other services share, is down or stalled,
    so they could not serve the request either. (An admin service that is not running
    at all is a plain ServiceUnavailable: the services check tokens themselves.)"""


class IssuedTokensViaAdmin:
    """What a token the admin service issued proves, for the gateway, which has no
    database: the admin service's `whoami` answers, kept as long as every service
    keeps its own reading (services.common.research.tokens.CACHE_SECONDS). The services check
    the token again on every call the gateway makes for it."""

    def __init__(self, proxy: ReverseProxy, cache_seconds: float = CACHE_SECONDS) -> None:
        self.proxy = proxy
        self._known = Remembered(cache_seconds)

    async def find(self, token: str) -> dict | None:
        return await self._known.get(token_digest(token), lambda: self._ask_admin(token))

    async def _ask_admin(self, token: str) -> dict | None:
        headers = {"Authorization": f"Bearer {token}"}

        async def attempt(base: str) -> tuple[int, bytes]:
            async with self.proxy.session.get(
                f"{base}/api/v1/whoami", headers=headers, timeout=self.proxy.health_timeout
            ) as answer:
                return answer.status, await answer.read()

        try:
            status, body = await self.proxy.upstreams["admin"].send("GET", attempt)
        except TimeoutError:
            # Reached but too slow: its database most likely, which the services share.
            raise _unavailable(CredentialCheckFailed) from None
        except aiohttp.ClientError:
            raise _unavailable(ServiceUnavailable) from None
        if status >= 500:  # it could not look (its database is down): not a refusal
            raise _unavailable(CredentialCheckFailed)
        if status != 200:
            return None
        who = msgspec.json.decode(body)
        if not isinstance(who, dict) or not who.get("token_id"):
            return None
        return {
            "kind": TokenKind.PARTICIPANT if who["role"] == "participant" else TokenKind.VIEWER,
            "study_ids": who.get("study_ids") or [],
            "user_id": who.get("user_id"),
            "token_id": who["token_id"],
            "name": who.get("name"),
        }
