"""Where a study's webhook may point: public addresses only, unless the operator says
otherwise (`EMOGO_WEBHOOK_ALLOW_PRIVATE=true`, for a receiver on the lab's own network).

A webhook is a request the server makes on an admin's behalf, so an address inside the
server's network (its own services on loopback, a cloud's metadata service on
169.254.169.254, the lab's private ranges) would let the notice reach, and its delivery
outcome reveal, what the public port never exposes (OWASP's SSRF prevention). The host
is resolved the way the HTTP client will resolve it (`getaddrinfo`, which also reads
`0x7f000001`, `2130706433` and `127.1` as 127.0.0.1), and every address it gives must be
global: checked when the URL is set, and again before each delivery, since a name may
be pointed elsewhere later. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from services.common.web.errors import field_error

# What a refusal says (never the address a name resolved to).
NOT_PUBLIC = "must point to a public address (not loopback, link-local, private or unspecified)"


def _global(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def addresses_of(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (empty when it does not resolve)."""
    try:
        found = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return [str(info[4][0]) for info in found]


def _host_and_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)  # ValueError for a host such as "D!]" (a broken IPv6 form)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # or a port that is not a number from 0 to 65535
        return None
    return (parts.hostname, port) if parts.hostname else None


def shown(url: str) -> str | None:
    """Where notices go, without the rest of the URL (often a secret), or None."""
    target = _host_and_port(url) if url else None
    return f"{urlsplit(url).scheme}://{target[0]}/…" if target else None


async def refusal(url: str, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to `url`, or None when it may. A name that does not
    resolve now is let through: it is checked again before each delivery."""
    if not url:
        return None
    target = _host_and_port(url)
    if target is None:
        return "must name a host, and a port from 0 to 65535 if any"
    if allow_private:
        return None
    if any(not _global(address) for address in await addresses_of(*target)):
        return NOT_PUBLIC
    return None


async def check(url: str | None, allow_private: bool) -> None:
    """422 naming `webhook_url` for a webhook that may not be set."""
    reason = await refusal(url or "", allow_private)
    if reason is not None:
        raise field_error("webhook_url", reason)


async def may_deliver(url: str, allow_private: bool) -> bool:
    """Whether a notice may be sent to `url` now: it resolves, and only to public
    addresses (or private ones are allowed)."""
    if allow_private:
        return True
    target = _host_and_port(url)
    found = await addresses_of(*target) if target is not None else []
    return bool(found) and all(_global(address) for address in found)
