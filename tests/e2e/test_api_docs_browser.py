"""The API documentation page in a real Chromium, under the site's Content-Security-Policy:
it renders every endpoint and fetches nothing from outside the site."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_swagger_ui_renders_with_its_own_assets(page, live_server) -> None:  # noqa: F811
    site = urlsplit(live_server.url).netloc
    outside: list[str] = []
    problems: list[str] = []

    def only_our_site(route, request) -> None:
        if urlsplit(request.url).netloc in ("", site) or request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    page.route("**/*", only_our_site)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .opblock-tag", timeout=20_000)
    tags = {t.strip().lower() for t in page.locator(".opblock-tag span").all_inner_texts()}
    assert {"students", "attendance", "documents", "grades"} <= tags, tags
    assert "Schoolhouse API" in page.locator(".info .title").inner_text()
    assert outside == [], f"the docs page reached outside the site: {outside}"
    assert problems == [], problems
