"""What a service with the database registers so that it can check every request's
credential and protect what viewers are sent: the shared collections (issued tokens,
studies, pseudonyms handed out) and the per-process caches of them.

Written by the admin service; read by every service with the database. The app builder
(services.common.web.app) takes these as arguments and knows nothing of them.
"""

from __future__ import annotations

from typing import Any

from beanie import Document

from services.common.research.protections import Protections
from services.common.research.pseudonyms import PseudonymEntry
from services.common.research.studies import Study
from services.common.research.tokens import AccessToken, IssuedTokens

SHARED_DOCUMENTS: tuple[type[Document], ...] = (AccessToken, Study, PseudonymEntry)


def shared_state() -> dict[str, Any]:
    """The app state keys services.common.research.auth and .privacy read: the issued
    tokens' cache and the studies' protections, one of each per process."""
    return {"issued_tokens": IssuedTokens(), "protections": Protections()}
