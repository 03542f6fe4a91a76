"""What the admin service's handlers are given besides their path, query and body,
registered once on the app: the settings, the key vault, the companion app's
defaults, the enrolment limits, the studies' protections and the caller."""

from __future__ import annotations

from services.admin.companion.accounts import Defaults, KeyVault
from services.admin.limits import EnrolmentLimits
from services.admin.settings import AdminSettings
from services.common.research.deps import CALLER_DEPENDENCIES
from services.common.research.protections import Protections
from services.common.web.given import Given, from_state

Settings = Given[AdminSettings]
Vault = Given[KeyVault]
AppDefaults = Given[Defaults]
Limits = Given[EnrolmentLimits]
StudyProtections = Given[Protections]


DEPENDENCIES = {
    **CALLER_DEPENDENCIES,
    "settings": from_state("settings"),
    "vault": from_state("vault"),
    "defaults": from_state("defaults"),
    "limits": from_state("enrolment_limits"),
    "protections": from_state("protections"),
}
