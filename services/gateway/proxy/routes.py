"""The proxy's mounts: every path under a service's prefixes goes to it unchanged."""

from __future__ import annotations

from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from services.gateway.proxy.relay import ROUTES, ReverseProxy


def proxy_mount(service: str, prefixes: tuple[str, ...]) -> ASGIRouteHandler:
    """One mount per service: every path under its prefixes goes to it unchanged."""

    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        proxy: ReverseProxy = scope["litestar_app"].state.proxy
        await proxy.forward(service, scope, receive, send)

    forward.__name__ = f"proxy_{service}"
    return asgi(path=list(prefixes), is_mount=True, name=f"proxy_{service}", copy_scope=False)(
        forward
    )


PROXY_MOUNTS = [proxy_mount(service, prefixes) for service, prefixes in ROUTES.items()]
