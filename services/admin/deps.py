"""What the admin service's handlers are given besides their path, query and body,
registered once on the app: the settings, the key vault and the caller."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from services.admin.companion.accounts import KeyVault
from services.admin.settings import AdminSettings
from services.common.research.deps import CALLER_DEPENDENCIES
from services.common.web.given import Given

Settings = Given[AdminSettings]
Vault = Given[KeyVault]


async def provide_settings(state: State) -> AdminSettings:
    settings: AdminSettings = state.settings
    return settings


async def provide_vault(state: State) -> KeyVault:
    vault: KeyVault = state.vault
    return vault


DEPENDENCIES = {
    **CALLER_DEPENDENCIES,
    "settings": Provide(provide_settings),
    "vault": Provide(provide_vault),
}
