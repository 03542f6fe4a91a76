"""Where a webhook may point (services.admin.research.webhooks): checked on addresses as the
HTTP client would resolve them, every spelling of an internal address refused."""

from __future__ import annotations

import asyncio

import pytest

from services.admin.research.webhooks import NOT_PUBLIC, may_deliver, refusal
from tests.e2e.test_silence_notices import INTERNAL


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused_when_set_and_when_delivered(url: str) -> None:
    assert asyncio.run(refusal(url, allow_private=False)) == NOT_PUBLIC
    assert asyncio.run(may_deliver(url, allow_private=False)) is False
    # A lab whose receiver is on its own network says so.
    assert asyncio.run(refusal(url, allow_private=True)) is None
    assert asyncio.run(may_deliver(url, allow_private=True)) is True


def test_public_addresses_are_allowed() -> None:
    for url in ("https://93.184.215.14/hook", "http://[2606:4700:4700::1111]/x"):
        assert asyncio.run(refusal(url, allow_private=False)) is None
        assert asyncio.run(may_deliver(url, allow_private=False)) is True


def test_a_name_that_does_not_resolve_is_not_delivered_to() -> None:
    url = "https://no-such-host.invalid/hook"
    assert asyncio.run(refusal(url, allow_private=False)) is None  # checked again later
    assert asyncio.run(may_deliver(url, allow_private=False)) is False


@pytest.mark.parametrize("url", ["https://D!]", "https://[::1/x", "http://host:0x50/", "https://"])
def test_a_url_without_a_readable_host_is_refused_even_where_private_ones_are_allowed(
    url: str,
) -> None:
    for allow_private in (False, True):
        assert (
            asyncio.run(refusal(url, allow_private))
            == "must name a host, and a port from 0 to 65535 if any"
        )
