"""A study's realistic start: the admin creates it and enrols participants, and each
phone trades its code for its own token, as the app would after scanning the QR code.

The tokens are kept in `<data dir>/studies/<study>.json` (readable by its owner
only) so that `telemetry`, `videos` and `demo` can send each participant's data with
that participant's own credential (`--study`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from generators.client import REFUSED, GeneratorError, data_dir


def tokens_file(study_id: str) -> Path:
    return data_dir() / "studies" / f"{study_id}.json"


def load_tokens(study_id: str) -> list[dict[str, str]]:
    """The participants enrolled by `enrol` for this study: user_id and token each."""
    path = tokens_file(study_id)
    if not path.is_file():
        raise GeneratorError(
            f"No participants of study {study_id!r} saved in {path}: run "
            f"`python -m generators enrol --study {study_id}` first",
            2,
        )
    return json.loads(path.read_text())["participants"]


def _save(study_id: str, participants: list[dict[str, str]]) -> Path:
    path = tokens_file(study_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    known = {p["user_id"]: p for p in (load_tokens(study_id) if path.is_file() else [])}
    known.update({p["user_id"]: p for p in participants})
    body = json.dumps({"study_id": study_id, "participants": list(known.values())}, indent=2)
    # Written readable by its owner only: these are credentials.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(body + "\n")
    return path


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code in (401, 403):
        raise GeneratorError(
            f"{what}: the gateway refused the admin credential ({response.status_code}); "
            "use the admin token (--admin-token, EMOGO_ADMIN_TOKEN or data/credentials.env)",
            REFUSED,
        )
    if not response.is_success:
        raise GeneratorError(f"{what}: {response.status_code} {response.text[:300]}")
    return response.json()


def enrol(
    gateway: str, admin_token: str | None, study_id: str, count: int, name: str, time_zone: str
) -> dict[str, Any]:
    """Creates the study unless it exists, enrols `count` new participants, exchanges
    their codes and saves their tokens; returns what `--json` prints."""
    if not admin_token:
        raise GeneratorError(
            "No admin credential: pass --admin-token or set EMOGO_ADMIN_TOKEN", REFUSED
        )
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=gateway, timeout=60) as client:
        try:
            created = client.post(
                "/api/studies",
                json={"study_id": study_id, "name": name, "time_zone": time_zone},
                headers=headers,
            )
        except httpx.HTTPError as problem:
            raise GeneratorError(
                f"Cannot reach the gateway at {gateway} ({type(problem).__name__}). "
                "Is the stack running (make run)?",
                3,
            ) from None
        if created.status_code != 409:  # 409: the study exists already; enrol more
            _check(created, "creating the study")
        issued = _check(
            client.post(
                f"/api/studies/{study_id}/participants", json={"count": count}, headers=headers
            ),
            "enrolling participants",
        )
        enrolled = []
        for participant in issued["participants"]:
            # The phone's side: no credential, only the code it scanned.
            answer = _exchange(client, study_id, participant)
            enrolled.append({"user_id": answer["user_id"], "token": answer["token"]})
            # Saved at once: a code is used up by its exchange, so a token not saved
            # now (the run stopped later) would be lost for good.
            _save(study_id, enrolled[-1:])
    return {"study_id": study_id, "participants": enrolled}


# How often a refused exchange (429) is tried again, and the longest wait honoured.
EXCHANGE_ATTEMPTS = 5
LONGEST_WAIT_SECONDS = 120.0


def _exchange(
    client: httpx.Client, study_id: str, participant: dict[str, Any], sleep: Any = time.sleep
) -> Any:
    """One code exchanged for its token, waiting out the enrolment rate limit as its
    Retry-After says (a class enrolled at once passes the per-address limit)."""
    what = f"exchanging the code of {participant['user_id']}"
    for _ in range(EXCHANGE_ATTEMPTS):
        answer = client.post("/api/enrol", json={"study_id": study_id, "code": participant["code"]})
        if answer.status_code != 429:
            return _check(answer, what)
        sleep(min(_retry_after(answer), LONGEST_WAIT_SECONDS))
    return _check(answer, what)


def _retry_after(answer: httpx.Response) -> float:
    value = answer.headers.get("retry-after", "")
    return float(value) if value.isascii() and value.isdigit() else 1.0
