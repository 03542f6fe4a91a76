"""Each service's API docs at `/docs/<service>`: its OpenAPI document and Swagger UI,
whose scripts and styles the service serves itself from a Python package
(swagger-ui-py ships Swagger UI 5, which renders OpenAPI 3.1), never from a CDN, so
the docs work on a lab network without internet. The gateway forwards `/docs/<service>`
unchanged, so the page works both directly and through it.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath

from services.common.web.errors import NotFound
from services.common.web.validation import ANY_QUERY

API_VERSION = "0.1.0"
SWAGGER_UI_FILES = Path(swagger_ui.__file__).parent / "static"
# The files the page loads, and their types; nothing else of the package is served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
}


def openapi_config(service: str, title: str, description: str) -> OpenAPIConfig:
    assets = f"/docs/{service}/assets"
    return OpenAPIConfig(
        title=title,
        version=API_VERSION,
        description=description,
        path=f"/docs/{service}",
        # No example values made up by Litestar: a document shows real examples or none.
        create_examples=False,
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{assets}/swagger-ui-bundle.js",
                css_url=f"{assets}/swagger-ui.css",
                standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
                favicon="",
            )
        ],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
                "basic": SecurityScheme(type="http", scheme="basic"),
            }
        ),
        security=[{"bearer": []}, {"basic": []}],
    )


def swagger_assets(service: str) -> HTTPRouteHandler:
    """`GET /docs/<service>/assets/<file>`: Swagger UI's own files, the same for everyone
    until the package changes."""

    @get(
        f"/docs/{service}/assets/{{name:str}}",
        include_in_schema=False,
        cache_control=CacheControlHeader(public=True, max_age=86400),
        opt={ANY_QUERY: True},
        sync_to_thread=False,
    )
    def asset(name: FromPath[str]) -> Response[bytes]:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"No asset {name!r}")
        return Response((SWAGGER_UI_FILES / name).read_bytes(), media_type=media_type)

    return asset
