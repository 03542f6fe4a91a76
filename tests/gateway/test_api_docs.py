"""Each service's API docs (`/docs/<service>`) render in Chromium with nothing loaded
from beyond the gateway: Swagger UI's files come from the services themselves."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Stack
from tests.support import viewer_in_chromium

SERVICES = ("gateway", "ingest", "media", "admin")


@pytest.mark.parametrize("service", SERVICES)
def test_the_docs_page_names_no_other_host(stack: Stack, service: str) -> None:
    page = httpx.get(f"{stack.gateway}/docs/{service}", timeout=30)
    assert page.status_code == 200
    assert "https://" not in page.text
    assert "http://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/docs/{service}/assets/{asset}" in page.text
        served = httpx.get(f"{stack.gateway}/docs/{service}/assets/{asset}", timeout=30)
        assert served.status_code == 200
        assert len(served.content) > 10_000
    assert httpx.get(f"{stack.gateway}/docs/{service}/assets/LICENSE").status_code == 404


@pytest.mark.browser
def test_every_docs_page_renders_offline_in_chromium(stack: Stack) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    gateway = urlsplit(stack.gateway).netloc
    elsewhere: list[str] = []
    with playwright.sync_playwright() as driver:
        browser, page = viewer_in_chromium(driver)

        def only_the_gateway(route: object) -> None:
            url = route.request.url  # type: ignore[attr-defined]
            if urlsplit(url).netloc == gateway or url.startswith("data:"):
                route.continue_()  # type: ignore[attr-defined]
            else:
                elsewhere.append(url)
                route.abort()  # type: ignore[attr-defined]

        page.route("**/*", only_the_gateway)
        for service in SERVICES:
            page.goto(f"{stack.gateway}/docs/{service}")
            # Swagger UI 5 draws one block per operation once it has read the document.
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() >= 3, service
            assert page.locator("text=Unable to render this definition").count() == 0
        browser.close()
    assert elsewhere == []
