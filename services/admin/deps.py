"""What the admin service's handlers are given besides their path, query and body,
registered once on the app: the settings, the key vault and the caller."""

from __future__ import annotations

from services.admin.companion.accounts import KeyVault
from services.admin.settings import AdminSettings
from services.common.research.deps import CALLER_DEPENDENCIES
from services.common.web.given import Given, from_state

Settings = Given[AdminSettings]
Vault = Given[KeyVault]


DEPENDENCIES = {
    **CALLER_DEPENDENCIES,
    "settings": from_state("settings"),
    "vault": from_state("vault"),
}
