"""PostgreSQL full-text and trigram indexes for student and guardian name search.

They are raw SQL because the search query (students.search) must use the very same
expressions for the planner to pick them; on SQLite the migration does nothing and search
falls back to plain LIKE filters.
"""

from __future__ import annotations

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

# Keep in step with students/search.py.
INDEXES = [
    (
        "student_name_fts_idx",
        "students_student",
        "gin (to_tsvector('simple'::regconfig, first_name || ' ' || last_name || ' ' "
        "|| preferred_name || ' ' || student_number))",
    ),
    (
        "student_name_trgm_idx",
        "students_student",
        "gin ((lower(first_name || ' ' || last_name)) gin_trgm_ops)",
    ),
    (
        "guardian_name_fts_idx",
        "students_guardian",
        "gin (to_tsvector('simple'::regconfig, first_name || ' ' || last_name))",
    ),
    (
        "guardian_name_trgm_idx",
        "students_guardian",
        "gin ((lower(first_name || ' ' || last_name)) gin_trgm_ops)",
    ),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, expression in INDEXES:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING {expression}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _table, _expression in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("students", "0001_initial")]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create, drop),
    ]
