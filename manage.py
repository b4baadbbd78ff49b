#!/usr/bin/env python
"""Django's command-line utility for Schoolhouse operators: `python manage.py help`."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _project_python() -> None:
    """Re-run under the project's .venv when this interpreter lacks Django, so
    `python manage.py ...` works after `make run` without activating anything."""
    venv = Path(__file__).resolve().parent / ".venv"
    venv_python = venv / "bin" / "python"
    # Compare environments, not binaries: a venv's python is a link to the system one.
    if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])  # noqa: S606


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")
    try:
        from school_site.db import choose_role
    except ModuleNotFoundError:
        _project_python()
        raise
    choose_role(sys.argv)
    try:
        from django.core.management import execute_from_command_line
    except ModuleNotFoundError:
        _project_python()
        raise
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
