"""A task that forgets to filter by school, for the second wall's test: a real worker imports
it with `--include` (tests/security/test_row_security.py)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tests.security.schools_seen")
def schools_seen() -> list[int]:
    from students.models import Student

    return sorted(set(Student.objects.values_list("school_id", flat=True)))
