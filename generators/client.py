"""Talking to the gateway as a phone does: a device credential, retries with backoff
on 429, 5xx and network errors, and clear failures when nothing can work."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

RETRIES = 6
UNREACHABLE, REFUSED, FAILED = 3, 4, 1


class GeneratorError(Exception):
    """Stops the generator with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def default_gateway() -> str:
    port = os.environ.get("EMOGO_GATEWAY_PORT", "8000")
    return os.environ.get("EMOGO_GATEWAY_URL", f"http://127.0.0.1:{port}")


def data_dir() -> Path:
    return Path(os.environ.get("EMOGO_DATA_DIR", "./data"))


def default_token(variable: str = "EMOGO_DEVICE_TOKEN") -> str | None:
    """The variable (the device token by default), else the one `make run` keeps in the
    data folder."""
    if token := os.environ.get(variable):
        return token
    credentials = data_dir() / "credentials.env"
    if credentials.is_file():
        for line in credentials.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == variable:
                return value.strip()
    return None


class Gateway:
    def __init__(self, url: str, token: str | None, timeout: float = 120) -> None:
        if not token:
            raise GeneratorError(
                "No device credential: pass --token or set EMOGO_DEVICE_TOKEN", REFUSED
            )
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def close(self) -> None:
        self.client.close()

    def check(self) -> str:
        """The credential's role; fails clearly when the gateway is away or refuses it."""
        try:
            response = self.client.get("/api/v1/whoami")
        except httpx.HTTPError as problem:
            raise GeneratorError(
                f"Cannot reach the gateway at {self.url} ({type(problem).__name__}). "
                "Is the stack running (make run)? Set --gateway or EMOGO_GATEWAY_URL.",
                UNREACHABLE,
            ) from None
        if response.status_code in (401, 403):
            raise GeneratorError(
                f"The gateway at {self.url} refused the credential ({response.status_code}): "
                "use the device token (EMOGO_DEVICE_TOKEN, or data/credentials.env)",
                REFUSED,
            )
        if response.status_code != 200:
            raise GeneratorError(f"The gateway answered {response.status_code}", UNREACHABLE)
        role = response.json().get("role")
        if role not in ("device", "admin", "participant"):
            raise GeneratorError(
                f"A {role} credential may not write; use the device token", REFUSED
            )
        return role

    def send(self, method: str, path: str, **request: Any) -> httpx.Response:
        """The request, retried with exponential backoff while the answer is 429, 5xx
        or no answer at all; other answers are returned as they are."""
        delay = 0.5
        for attempt in range(RETRIES + 1):
            try:
                response = self.client.request(method, path, **request)
            except httpx.TransportError as problem:
                if attempt == RETRIES:
                    raise GeneratorError(
                        f"{method} {path}: no answer after {RETRIES} retries "
                        f"({type(problem).__name__})",
                        UNREACHABLE,
                    ) from None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                if attempt == RETRIES:
                    raise GeneratorError(
                        f"{method} {path}: {response.status_code} after {RETRIES} retries"
                    )
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            time.sleep(delay)
            delay = min(delay * 2, 30)
        raise AssertionError("unreachable")
