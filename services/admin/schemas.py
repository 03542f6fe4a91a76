"""Wire types of the admin service."""

from services.common.schemas import WireStruct


class WhoAmI(WireStruct):
    role: str
    user_id: str | None = None
