"""Drop the single-column indexes of attendance's foreign keys: composite indexes lead with
each of them (school/date/status, section/date, the unique student/date/period).

Only the indexes go. A plain AlterField would also drop and re-add each foreign-key
constraint, and PostgreSQL re-validates a re-added constraint against every row: minutes
under an exclusive lock on a district's attendance table. The index names are the ones
Django gave them (the same on PostgreSQL and SQLite)."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {
    "school_id": "students_attendancerecord_school_id_f9a91085",
    "section_id": "students_attendancerecord_section_id_107d3c94",
    "student_id": "students_attendancerecord_student_id_97a89ca5",
}


class Migration(migrations.Migration):
    dependencies = [
        ("students", "0004_year_in_practice"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" '
                    f'ON "students_attendancerecord" ("{column}")',
                )
                for column, name in INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="attendancerecord",
                    name="school",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="students.school",
                    ),
                ),
                migrations.AlterField(
                    model_name="attendancerecord",
                    name="section",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="attendance",
                        to="students.section",
                    ),
                ),
                migrations.AlterField(
                    model_name="attendancerecord",
                    name="student",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attendance",
                        to="students.student",
                    ),
                ),
            ],
        ),
    ]
