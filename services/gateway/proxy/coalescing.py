"""Single posts that arrive together go upstream together, whatever their credentials.

Phones and generators post one record per request. Relaying each costs the gateway an
upstream request and the ingest service a whole HTTP request (parsing, routing, an
access line, an answer), which is most of what either spends on a post
(bench/cpu_cost.py). Posts that arrive while an earlier one to the same path is on its
way wait for it (at most PATIENCE_SECONDS) and then go as one request to
`POST <path>/posts`, made with the
gateway's own credential (EMOGO_SERVICE_TOKEN) and carrying each post's own
`Authorization` beside its body. Ingest checks each post's credential as its single
route would (a refused credential refuses only its own post), stores or refuses each
exactly as it would have alone and answers each in order; a post that arrives alone
goes at once, as before. So a class of phones, each with its own participant token,
shares requests as the one device token of a generator does. Every client still gets
its own answer only after its own record is acknowledged. Once posts have met a
request in flight, the next request waits a few milliseconds
(EMOGO_GATEWAY_RELAY_LINGER_MS) for the posts of the clients just answered: a busy
path's posts then wait up to that much longer, an idle one's not at all.

What may be relayed together is narrow on purpose: a JSON object of at most
RELAYED_POST_BYTES, no query, no content coding, a credential of at most
RELAYED_CREDENTIAL_BYTES. Anything else, and every post when ingest refuses the
combined request as a whole (an old replica without the route), goes alone, so its
answer is the one it would always have had. A combined request whose fate is unknown
(the connection broke after it was sent) answers each of its posts as one such post
would be: 502, and the phone resends with its client_id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from multidict import CIMultiDict

from services.common.web.errors import BadGateway
from services.common.web.schemas import (
    RELAYED_CREDENTIAL_BYTES,
    RELAYED_POST_BYTES,
    RELAYED_POSTS_MOST,
    PostAnswers,
)
from services.common.web.validation import is_json_media_type

# The paths whose single posts are relayed together (ingest's single writes).
RELAYED_PATHS = frozenset({"/api/sentiments", "/api/gps"})
_ANSWERS = msgspec.json.Decoder(PostAnswers)
# How long posts wait for the request in flight before they go in one of their own, and
# how many requests of one path may be in flight at once. A request normally lands in a
# few milliseconds; one held by a frozen database for its whole deadline made every post
# behind it answer after two deadlines (tests/e2e/test_database_faults.py).
PATIENCE_SECONDS = 0.1
MOST_IN_FLIGHT = 8


class Answer(msgspec.Struct, frozen=True):
    """What goes back to one client: status, headers (without hop-by-hop ones) and body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


# Sends one request upstream: (service, path, headers, body) -> its whole answer.
Exchange = Callable[[str, str, CIMultiDict[str], bytes], Awaitable[Answer]]


def relayable(path: str, query: bytes, headers: CIMultiDict[str], body: bytes) -> bool:
    """Whether a post may go upstream with others: a small JSON object, nothing else."""
    if query or not body or len(body) > RELAYED_POST_BYTES or path not in RELAYED_PATHS:
        return False
    credential = headers.get("authorization")
    if not credential or len(credential) > RELAYED_CREDENTIAL_BYTES:
        return False
    if "content-encoding" in headers:
        return False
    content_type = headers.get("content-type")
    if content_type is not None and not is_json_media_type(content_type):
        return False
    try:
        # Exactly one JSON object: the bodies are joined into one array as they are.
        return isinstance(msgspec.json.decode(body), dict)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False


@dataclass(slots=True)
class _Waiting:
    headers: CIMultiDict[str]
    body: bytes
    answered: asyncio.Future[Answer]


class PostCoalescer:
    """One request in flight per (service, path) as long as requests land quickly; what
    arrives meanwhile goes together in the next one, sent with the gateway's own
    credential."""

    def __init__(
        self,
        exchange: Exchange,
        linger: float,
        service_token: str,
        most: int = RELAYED_POSTS_MOST,
    ) -> None:
        self._exchange = exchange
        self._linger = linger
        self._service_credential = f"Bearer {service_token}"
        self._most = most
        self._waiting: dict[tuple[str, str], list[_Waiting]] = {}
        self._senders: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def post(self, service: str, path: str, headers: CIMultiDict[str], body: bytes) -> Answer:
        """The answer to this post; raises what a failed upstream request means
        (services.gateway.proxy.relay.upstream_failure)."""
        key = (service, path)
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(_Waiting(headers, body, answered))
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send_all(key))
        return await answered

    async def _send_all(self, key: tuple[str, str]) -> None:
        flights: set[asyncio.Task[None]] = set()
        try:
            landed = False
            while True:
                waiting = self._waiting.get(key)
                if waiting and len(flights) < MOST_IN_FLIGHT:
                    if landed and self._linger and len(waiting) < self._most:
                        # Posts came while the last request was on its way, so the
                        # clients just answered are about to send their next: a few ms
                        # gathers them (3 ms: 5.6 posts a request instead of 2.1 in
                        # bench/cpu_cost.py).
                        await asyncio.sleep(self._linger)
                    batch = waiting[: self._most]
                    del waiting[: self._most]
                    flights.add(asyncio.create_task(self._send(key[0], key[1], batch)))
                if not flights:
                    return
                # Posts that arrive meanwhile wait for a request to land, but only for
                # PATIENCE_SECONDS: behind one held by a slow database they go on their
                # own, so each post still answers within one database deadline.
                done, _ = await asyncio.wait(
                    flights,
                    timeout=None if len(flights) >= MOST_IN_FLIGHT else PATIENCE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                flights -= done
                landed = bool(done)
        finally:
            for flight in flights:
                flight.cancel()
            self._waiting.pop(key, None)
            del self._senders[key]

    async def _send(self, service: str, path: str, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                one = batch[0]
                _settle(one, await self._exchange(service, path, one.headers, one.body))
                return
            answers = await self._together(service, path, batch)
            if answers is None:  # refused as a whole: nothing stored, each goes alone
                answers = await asyncio.gather(
                    *(self._exchange(service, path, one.headers, one.body) for one in batch)
                )
            for one, answer in zip(batch, answers, strict=True):
                _settle(one, answer)
        except asyncio.CancelledError:
            for one in batch:
                one.answered.cancel()
            raise
        except Exception as failure:  # the request's fate is each post's
            for one in batch:
                if not one.answered.done():
                    one.answered.set_exception(failure)

    async def _together(
        self, service: str, path: str, batch: list[_Waiting]
    ) -> list[Answer] | None:
        headers = batch[0].headers.copy()
        headers.popall("x-request-id", None)  # the combined request gets its own
        headers.popall("content-length", None)
        headers["content-type"] = "application/json"
        headers["authorization"] = self._service_credential
        body = b"[" + b",".join(_entry(one) for one in batch) + b"]"
        combined = await self._exchange(service, f"{path}/posts", headers, body)
        if combined.status != 200:
            return None
        shared = [(name, value) for name, value in combined.headers if name != b"content-length"]
        try:
            answers = _ANSWERS.decode(combined.body).answers
        except msgspec.DecodeError:
            answers = []
        if len(answers) != len(batch):
            raise BadGateway(
                f"The {service} service gave no valid answer", extra={"service": service}
            )
        return [
            Answer(
                status=answer.status,
                headers=[
                    *shared,
                    *(
                        (name.lower().encode(), value.encode())
                        for name, value in answer.headers.items()
                    ),
                    (b"content-length", str(len(answer.body)).encode()),
                ],
                body=bytes(answer.body),
            )
            for answer in answers
        ]


def _entry(one: _Waiting) -> bytes:
    """A post as ingest reads it among others: its own credential and its body."""
    credential = msgspec.json.encode(one.headers["authorization"])
    return b'{"authorization":' + credential + b',"body":' + one.body + b"}"


def _settle(one: _Waiting, answer: Answer) -> None:
    if not one.answered.done():  # a client that went away is not answered
        one.answered.set_result(answer)
