"""Query-string filters of the list endpoints.

Foreign keys are filtered as plain numbers on purpose: a model-choice filter would answer
"not a valid choice" for an id that exists nowhere but accept one of another school, telling
a caller which ids exist elsewhere. A number just matches nothing outside the scoped list.
"""

from __future__ import annotations

import datetime

import django_filters as df
from django import forms
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField

from files.models import Document, DocumentVersion
from students.models import (
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    Guardian,
    Section,
    Student,
    StudentGuardian,
)


class IdFilter(df.NumberFilter):
    """A whole, positive number (the default NumberFilter takes decimals)."""

    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("min_value", 0)
        super().__init__(*args, **kwargs)


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 moment, turned into UTC here: PostgreSQL refuses offsets beyond ±15:59,
    which ISO allows, and a refused query must be a 400, not a 500."""

    def to_python(self, value: object) -> datetime.datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(datetime.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("Enter a valid date/time.") from None


class UtcDateTimeFilter(df.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class StudentFilter(df.FilterSet):
    status = df.ChoiceFilter(choices=Student.Status.choices)
    grade_level = IdFilter(field_name="grade_level_id")
    section = IdFilter(method="in_section", label="Currently enrolled in this section")
    born_after = df.DateFilter(field_name="date_of_birth", lookup_expr="gte")
    born_before = df.DateFilter(field_name="date_of_birth", lookup_expr="lte")
    updated_since = UtcDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Student
        fields: list[str] = []

    def in_section(self, qs: QuerySet[Student], name: str, value: int) -> QuerySet[Student]:
        # Subquery rather than a join: a join would repeat students and need DISTINCT.
        return qs.filter(
            pk__in=Enrollment.objects.filter(section_id=value, ended_on__isnull=True).values(
                "student_id"
            )
        )


class GuardianFilter(df.FilterSet):
    student = IdFilter(method="of_student", label="Guardians of this student")
    receives_absence_alerts = df.BooleanFilter()

    class Meta:
        model = Guardian
        fields: list[str] = []

    def of_student(self, qs: QuerySet[Guardian], name: str, value: int) -> QuerySet[Guardian]:
        return qs.filter(
            pk__in=StudentGuardian.objects.filter(student_id=value).values("guardian_id")
        )


class SectionFilter(df.FilterSet):
    academic_year = IdFilter(field_name="academic_year_id")
    grade_level = IdFilter(field_name="grade_level_id")

    class Meta:
        model = Section
        fields: list[str] = []


class EnrollmentFilter(df.FilterSet):
    student = IdFilter(field_name="student_id")
    section = IdFilter(field_name="section_id")
    academic_year = IdFilter(field_name="academic_year_id")
    active = df.BooleanFilter(field_name="ended_on", lookup_expr="isnull", label="Not ended")

    class Meta:
        model = Enrollment
        fields: list[str] = []


class AttendanceFilter(df.FilterSet):
    student = IdFilter(field_name="student_id")
    section = IdFilter(field_name="section_id")
    date = df.DateFilter()
    date_from = df.DateFilter(field_name="date", lookup_expr="gte")
    date_to = df.DateFilter(field_name="date", lookup_expr="lte")
    status = df.ChoiceFilter(choices=AttendanceRecord.Status.choices)
    period = IdFilter()

    class Meta:
        model = AttendanceRecord
        fields: list[str] = []


class AssessmentFilter(df.FilterSet):
    section = IdFilter(field_name="section_id")
    subject = IdFilter(field_name="subject_id")
    term = IdFilter(field_name="term_id")

    class Meta:
        model = Assessment
        fields: list[str] = []


class GradeFilter(df.FilterSet):
    assessment = IdFilter(field_name="assessment_id")
    student = IdFilter(field_name="student_id")
    term = IdFilter(field_name="assessment__term_id")

    class Meta:
        model = Grade
        fields: list[str] = []


class DocumentFilter(df.FilterSet):
    student = IdFilter(field_name="student_id")
    school_only = df.BooleanFilter(
        field_name="student", lookup_expr="isnull", label="Only documents of the school itself"
    )
    category = df.ChoiceFilter(choices=Document.Category.choices)
    sensitive = df.BooleanFilter()

    class Meta:
        model = Document
        fields: list[str] = []


class DocumentVersionFilter(df.FilterSet):
    document = IdFilter(field_name="document_id")

    class Meta:
        model = DocumentVersion
        fields: list[str] = []
