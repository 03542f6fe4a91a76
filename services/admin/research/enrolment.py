"""Enrolment: the one-time code a TA gives a participant, and its exchange by the
phone for the participant's own token.

A code is ten characters of Crockford's base32 (no I, L, O or U), shown as
`ABCDE-FGHJK`: 50 bits, easy to read aloud and type. Typing is forgiving: case,
spaces and dashes are ignored, and O, I and L read as 0, 1 and 1. Only an HMAC of
the code under the server's secret key is stored, so a copy of the database does
not reveal codes, and every key of `EMOGO_SECRET_KEY` is tried so that a key
rotation does not void codes already printed. Guessing is limited per client
address and per study; a code works once and expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import segno
from litestar import Controller, Request, post
from pymongo.errors import PyMongoError

from services.admin.deps import Limits, Settings
from services.admin.models import Participant
from services.admin.research.schemas import Enrolled, Enrolment, IssuedCode
from services.admin.research.viewer_tokens import issue_token
from services.common.research.studies import open_study
from services.common.research.tokens import AccessToken, TokenKind, revoke_token
from services.common.web.bodies import Record, json_body
from services.common.web.clients import client_address
from services.common.web.errors import FieldError
from services.common.web.openapi import error_responses
from services.common.web.timestamps import stored_now

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_code() -> str:
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{code[:5]}-{code[5:]}"


def normalised_code(typed: str) -> str:
    return "".join(typed.upper().split()).replace("-", "").translate(_READ_AS)


def code_digests(code: str, keys: tuple[str, ...]) -> list[str]:
    """The code's HMAC under each key; the first key's is the one stored."""
    plain = normalised_code(code).encode()
    return [hmac.new(key.encode(), plain, hashlib.sha256).hexdigest() for key in keys]


def enrol_uri(study_id: str, code: str) -> str:
    """What the QR code holds: an app link with the study and the code."""
    return "emogo://enrol?" + urlencode({"study": study_id, "code": code})


def qr_pictures(text: str) -> tuple[str, str]:
    """The QR code of `text` as SVG (to print at any size) and as a PNG data URI (to
    show in an <img>)."""
    qr = segno.make(text, error="m")
    svg, png = io.BytesIO(), io.BytesIO()
    qr.save(svg, kind="svg", scale=4, border=4, xmldecl=False)
    qr.save(png, kind="png", scale=6, border=4)
    return svg.getvalue().decode(), "data:image/png;base64," + base64.b64encode(
        png.getvalue()
    ).decode()


def issue_code(
    participant: dict, keys: tuple[str, ...], lifetime: float
) -> tuple[dict, IssuedCode]:
    """A fresh code for a participant: the changes to store, and what the TA is shown."""
    code = new_code()
    expires = stored_now() + timedelta(seconds=lifetime)
    changes = {
        "code_digest": code_digests(code, keys)[0],
        "code_expires_at": expires,
        "code_used_at": None,
    }
    uri = enrol_uri(participant["study_id"], code)
    svg, png = qr_pictures(uri)
    shown = IssuedCode(
        user_id=participant["user_id"],
        code=code,
        code_expires_at=expires,
        enrol_uri=uri,
        qr_svg=svg,
        qr_png=png,
    )
    return changes, shown


def _refused(reason: str) -> FieldError:
    return FieldError([{"field": "code", "reason": reason, "source": "body"}])


async def exchange(study_id: str, code: str, keys: tuple[str, ...]) -> Enrolled:
    """The participant's token for a valid, unused, unexpired code of an open study."""
    await open_study(study_id)
    digests = code_digests(code, keys)
    participants = Participant.get_pymongo_collection()
    found = await participants.find_one({"study_id": study_id, "code_digest": {"$in": digests}})
    now = stored_now()
    if found is None or found["status"] != "active":
        raise _refused("is not a valid enrolment code for this study")
    if found["code_used_at"] is not None:
        raise _refused("has been used already: ask the study team for a new one")
    if found["code_expires_at"] <= now:
        raise _refused("has expired: ask the study team for a new one")
    user_id = found["user_id"]
    # The token is stored first and the code claimed after: a failure in between
    # leaves an unused token (removed below), never a used code without a token.
    token, document = await issue_token(TokenKind.PARTICIPANT, user_id, [study_id], user_id)
    token_id = document["token_id"]
    tokens = AccessToken.get_pymongo_collection()
    try:
        claimed = await participants.find_one_and_update(
            {"_id": found["_id"], "code_digest": found["code_digest"], "code_used_at": None},
            {"$set": {"code_used_at": now, "token_id": token_id}},
        )
    except PyMongoError:
        await tokens.delete_one({"token_id": token_id})
        raise
    if claimed is None:  # another exchange of the same code won the race
        await tokens.delete_one({"token_id": token_id})
        raise _refused("has been used already: ask the study team for a new one")
    await revoke_token(claimed.get("token_id"))
    return Enrolled(token=token, study_id=study_id, user_id=user_id, token_id=token_id)


class EnrolmentController(Controller):
    """The one public route of enrolment: a phone trades its code for its token."""

    path = "/api/enrol"
    tags = ["studies"]

    @json_body
    @post(
        "/",
        operation_id="enrol",
        summary="Exchange an enrolment code for the participant's token (open; rate-limited)",
        responses=error_responses(403, 404, 429),
        status_code=201,
        security=[],
    )
    async def enrol(
        self, settings: Settings, limits: Limits, request: Request, enrolment: Record[Enrolment]
    ) -> Enrolled:
        address = client_address(request)
        attempt = await limits.per_address.check(address)
        await limits.hold_back_guessers(enrolment.study_id, address)
        try:
            enrolled = await exchange(enrolment.study_id, enrolment.code, settings.secret_keys)
        except FieldError:
            await limits.failed(enrolment.study_id, address)
            raise
        # A code that works was no guess: a class behind one address enrols whole.
        await limits.per_address.release(attempt)
        return enrolled
