"""HTTP handlers of the admin service."""

from __future__ import annotations

from litestar import Controller, Request, get

from services.admin.schemas import WhoAmI
from services.common.auth import ANY_ROLE, authenticate, requires


class CredentialController(Controller):
    path = "/api/v1"
    tags = ["credentials"]

    @get(
        "/whoami",
        operation_id="whoami",
        guards=[requires(*ANY_ROLE)],
        summary="The role a credential grants (lets clients check a token before use)",
    )
    async def whoami(self, request: Request) -> WhoAmI:
        principal = authenticate(request)
        return WhoAmI(role=principal.role, user_id=principal.user_id)
