"""Schemathesis hooks for the contract run (SCHEMATHESIS_HOOKS=tests.contract.hooks):
tus's byte bodies are sent as any byte body is."""

from __future__ import annotations

import schemathesis

# tus 1.0.0 (services/media/tus.py): a PATCH's bytes, and a creation's first bytes.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
