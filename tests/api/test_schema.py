"""The OpenAPI schema: the committed file matches the code, the documentation page serves
its own assets, and schemathesis finds no 500 and no answer outside the schema."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import schemathesis
from django.conf import settings
from django.core.management import call_command
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

COMMITTED = Path(settings.BASE_DIR) / "docs" / "api" / "openapi.yaml"
# PostgreSQL, as in CI and production: the schema's integer bounds come from the database
# backend's column ranges, which SQLite reports differently.
REGENERATE = (
    "DATABASE_URL=postgres://... python manage.py spectacular "
    "--file docs/api/openapi.yaml --validate"
)


@pytest.mark.unit
def test_committed_schema_matches_the_code(tmp_path) -> None:
    fresh = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(fresh), "--validate", "--fail-on-warn")
    assert fresh.read_text() == COMMITTED.read_text(), (
        f"docs/api/openapi.yaml is out of date with the API. Regenerate it: {REGENERATE}"
    )


@pytest.mark.unit
def test_docs_page_serves_its_assets_itself(client) -> None:
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for url in assets:
        assert url.startswith("/"), f"the docs page loads {url} from elsewhere"
        response = client.get(url)
        assert response.status_code == 200, url
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"Schoolhouse API" in schema.content


# --- schemathesis -------------------------------------------------------------------------------
def _app_schema() -> schemathesis.schemas.BaseSchema:
    """The committed schema (identical to the served one: see the drift test above), its
    calls sent in-process to the WSGI app."""
    from school_site.wsgi import application

    loaded = schemathesis.openapi.from_path(COMMITTED)
    loaded.app = application
    # The coverage phase sends every boundary case of every parameter (thousands of calls,
    # minutes); random valid and invalid cases, a bounded number per operation, keep the run
    # near a minute. SCHEMATHESIS_COVERAGE=1 turns it on for a thorough run.
    loaded.config.phases.coverage.enabled = bool(os.environ.get("SCHEMATHESIS_COVERAGE"))
    return loaded


schema = _app_schema()


@pytest.fixture
def same_connection(db):
    """As Django's test client does: a request must not close the connection that holds the
    test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(world, make_token, settings) -> str:
    """Made once per operation (fixtures are not re-run for each generated call)."""
    settings.API_THROTTLE_RATE = ""  # hundreds of calls in a few seconds are the point here
    return make_token(world.admin, world.school)


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.mark.integration
# schemathesis gives every operation's item the same node id, and pytest-xdist runs only one
# item per node id; so under xdist this is skipped and scripts/test.sh runs it in a second,
# single-process pytest (`-p no:xdist -m schemathesis`), where every operation is called.
@pytest.mark.schemathesis
@pytest.mark.skipif(
    bool(os.environ.get("PYTEST_XDIST_WORKER")),
    reason="needs one process: scripts/test.sh runs it with -p no:xdist",
)
@schema.parametrize()
@hypothesis_settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_within_its_schema(case, same_connection, admin_token) -> None:
    """Calls as the school administrator (who may do everything), with random valid and
    invalid parameters and bodies."""
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)
