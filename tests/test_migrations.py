"""Every model change has its migration: `makemigrations --check` finds nothing to write.

Run in-process with the test settings, so it needs no SECRET_KEY or .env (a bare
`manage.py makemigrations --check` on a fresh checkout rightly refuses to start without
SECRET_KEY or DEBUG=true, as production would)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.unit


@pytest.mark.django_db
def test_no_model_change_lacks_its_migration(capsys) -> None:
    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=1)
    except SystemExit:  # --check exits 1 when a migration is missing
        pytest.fail(f"makemigrations --check would write:\n{capsys.readouterr().out}")
    assert "No changes detected" in capsys.readouterr().out
