"""What the gateway's HTML pages (home, docs index, export page, map) are sent with:
a Content-Security-Policy that lets them load nothing but the gateway's own scripts,
styles, images and videos (and the map's tiles), and no other site frame them.

A page shows participant data to a signed-in TA: if text a participant wrote ever
slipped past the templates' escaping, the browser would still run no script of it,
and a page of another site cannot overlay it to take the TA's clicks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.response import Template


def tile_origin(tiles: str) -> str | None:
    """Where map tiles come from, as a CSP source: `https://tile.openstreetmap.org`,
    or `https://*.tile.example.org` for a URL with Leaflet's `{s}` subdomains."""
    if not tiles:
        return None
    parts = urlsplit(tiles)
    return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"


def page_headers(tiles: str) -> dict[str, str]:
    images = " ".join(filter(None, ["'self'", "data:", tile_origin(tiles)]))
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            # The pages' <style> and the colour swatches of the map's days.
            "style-src 'self' 'unsafe-inline'",
            f"img-src {images}",
            "media-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",  # frame-ancestors, for browsers without CSP 2
        "X-Content-Type-Options": "nosniff",
        # Tile servers learn the gateway's origin, not the page's participant and filters.
        "Referrer-Policy": "strict-origin-when-cross-origin",
    }


def page(request: Request, template_name: str, context: Mapping[str, Any]) -> Template:
    """A page from `template_name`, sent with the headers above."""
    headers: dict[str, str] = request.app.state.page_headers
    return Template(template_name=template_name, context=dict(context), headers=headers)
