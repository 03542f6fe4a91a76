"""A small app built with the shared `build_app`, for testing the shared mechanisms."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, get, post
from litestar.params import FromPath, JSONBody

from services.common.research.auth import READERS, WRITERS, Role, requires
from services.common.runtime.settings import load_service_settings
from services.common.web.app import build_app
from services.common.web.errors import Conflict, NotFound, field_error
from services.common.web.schemas import WireStruct
from tests.support import TOKENS


class Reading(WireStruct):
    user_id: str
    intensity: float


@post("/readings", operation_id="create_reading", guards=[requires(*WRITERS)])
async def create_reading(data: JSONBody[Reading]) -> dict[str, str]:
    if not 0 <= data.intensity <= 1:
        raise field_error("intensity", "must be between 0 and 1")
    return {"user_id": data.user_id}


@get("/readings/{reading_id:str}", operation_id="get_reading", guards=[requires(*READERS)])
async def get_reading(reading_id: FromPath[str]) -> dict[str, str]:
    if reading_id == "taken":
        raise Conflict("Reading taken already exists")
    raise NotFound(f"Reading {reading_id} not found")


@get("/admin-only", operation_id="admin_only", guards=[requires(Role.ADMIN)])
async def admin_only() -> dict[str, str]:
    return {"ok": "yes"}


@get("/boom", operation_id="boom", guards=[requires(Role.ADMIN)])
async def boom() -> dict[str, str]:
    secret = TOKENS["admin"]
    raise RuntimeError(f"exploded while holding Bearer {secret}")


def make_app(log_dir: Path, max_body: int = 1024) -> Litestar:
    settings = load_service_settings(
        "ingest",
        {
            "EMOGO_ADMIN_TOKEN": TOKENS["admin"],
            "EMOGO_VIEWER_TOKEN": TOKENS["viewer"],
            "EMOGO_DEVICE_TOKEN": TOKENS["device"],
            "EMOGO_LOG_DIR": str(log_dir),
            "EMOGO_MAX_JSON_BODY_BYTES": str(max_body),
        },
    )
    return build_app(
        settings,
        title="test",
        description="test",
        route_handlers=[create_reading, get_reading, admin_only, boom],
        documents=None,
        include_health=False,
    )
