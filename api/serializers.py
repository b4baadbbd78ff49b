"""What the API reads and writes. Thin: fields and input checks; writes go to the services.

Every foreign key a client may send is looked up inside the caller's school (and, for a
teacher, their own sections and students), so an id of another school is refused as
"does not exist", exactly as the pages answer 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import serializers

from files.models import Document, DocumentVersion
from students.models import (
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    GradeLevel,
    Guardian,
    Section,
    Student,
    StudentGuardian,
    Subject,
    Term,
)
from students.services import STUDENT_EDITABLE_FIELDS
from students.tenancy import SchoolAccess


def request_access(serializer: serializers.Field) -> SchoolAccess | None:
    request = serializer.context.get("request")
    access = getattr(request, "access", None) if request is not None else None
    return access if access else None


class SchoolScopedField(serializers.PrimaryKeyRelatedField):
    """A primary key looked up only among the rows the caller may see.

    `scope` names what to ask the access for: "students" or "sections" (a teacher's own),
    or "school" (every row of the school, for reference data such as grade levels)."""

    def __init__(self, *, scope: str = "school", **kwargs: Any) -> None:
        self.scope = scope
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Model]:
        model = super().get_queryset().model
        access = request_access(self)
        if access is None:
            return model._default_manager.none()
        if self.scope == "students":
            return access.students()
        if self.scope == "sections":
            return access.sections()
        return model._default_manager.filter(school=access.school)


# ---------------------------------------------------------------------------------------------
# Students and guardians
# ---------------------------------------------------------------------------------------------
class StudentSerializer(serializers.ModelSerializer):
    grade_level = SchoolScopedField(
        queryset=GradeLevel.objects.all(), allow_null=True, required=False
    )
    full_name = serializers.CharField(read_only=True)

    class Meta:
        model = Student
        # What the API may write is what the student services edit (one list for both).
        fields = ["id", *STUDENT_EDITABLE_FIELDS, "full_name", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness per school is checked by the service's full_clean(), with the school.
        validators: list = []


class GuardianLinkSerializer(serializers.ModelSerializer):
    class Meta:
        model = StudentGuardian
        fields = ["student", "relationship", "is_primary", "can_pick_up", "lives_with_student"]


class GuardianSerializer(serializers.ModelSerializer):
    students = GuardianLinkSerializer(source="visible_links", many=True, read_only=True)

    class Meta:
        model = Guardian
        fields = [
            "id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "alternate_phone",
            "address",
            "preferred_language",
            "receives_absence_alerts",
            "students",
        ]


# ---------------------------------------------------------------------------------------------
# Sections and enrollments
# ---------------------------------------------------------------------------------------------
class SectionSerializer(serializers.ModelSerializer):
    academic_year_name = serializers.CharField(source="academic_year.name", read_only=True)
    grade_level_name = serializers.CharField(source="grade_level.name", read_only=True)

    class Meta:
        model = Section
        fields = [
            "id",
            "name",
            "room",
            "capacity",
            "academic_year",
            "academic_year_name",
            "grade_level",
            "grade_level_name",
        ]


class EnrollmentSerializer(serializers.ModelSerializer):
    student = SchoolScopedField(scope="students", queryset=Student.objects.all())
    section = SchoolScopedField(scope="sections", queryset=Section.objects.all())
    started_on = serializers.DateField(
        required=False, help_text="Defaults to today; an open enrollment of the year ends then."
    )

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "student",
            "section",
            "academic_year",
            "started_on",
            "ended_on",
            "end_reason",
        ]
        read_only_fields = ["academic_year", "ended_on", "end_reason"]


# ---------------------------------------------------------------------------------------------
# Attendance
# ---------------------------------------------------------------------------------------------
class AttendanceRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AttendanceRecord
        fields = ["id", "student", "section", "date", "period", "status", "note", "recorded_at"]


class AttendanceMarkSerializer(serializers.Serializer):
    student = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(choices=AttendanceRecord.Status.choices)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class AttendanceBulkSerializer(serializers.Serializer):
    section = SchoolScopedField(scope="sections", queryset=Section.objects.all())
    date = serializers.DateField()
    period = serializers.IntegerField(
        min_value=0, max_value=32767, default=0, help_text="0 means the whole day."
    )
    marks = AttendanceMarkSerializer(many=True, allow_empty=False, max_length=2000)

    def validate_marks(self, marks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [m["student"] for m in marks]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("A student is marked twice.")
        return marks


class AttendanceBulkResultSerializer(serializers.Serializer):
    section = serializers.IntegerField()
    date = serializers.DateField()
    period = serializers.IntegerField()
    recorded = serializers.IntegerField(help_text="How many marks were written.")


# ---------------------------------------------------------------------------------------------
# Assessments and grades
# ---------------------------------------------------------------------------------------------
class AssessmentSerializer(serializers.ModelSerializer):
    section = SchoolScopedField(scope="sections", queryset=Section.objects.all())
    subject = SchoolScopedField(queryset=Subject.objects.all())
    term = SchoolScopedField(queryset=Term.objects.all())

    class Meta:
        model = Assessment
        fields = ["id", "section", "subject", "term", "name", "max_score", "weight", "due_on"]


class GradeSerializer(serializers.ModelSerializer):
    percent = serializers.DecimalField(max_digits=5, decimal_places=1, read_only=True)

    class Meta:
        model = Grade
        fields = [
            "id",
            "assessment",
            "student",
            "score",
            "max_score",
            "percent",
            "comment",
            "updated_at",
        ]


class GradeEntrySerializer(serializers.Serializer):
    student = serializers.IntegerField(min_value=1)
    score = serializers.DecimalField(max_digits=6, decimal_places=2, min_value=0)
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class GradeBulkSerializer(serializers.Serializer):
    grades = GradeEntrySerializer(many=True, allow_empty=False, max_length=2000)

    def validate_grades(self, grades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [g["student"] for g in grades]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("A student is graded twice.")
        return grades


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------
class DocumentVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = DocumentVersion
        fields = [
            "id",
            "document",
            "number",
            "size",
            "sha256",
            "content_type",
            "original_name",
            "comment",
            "created_at",
        ]


class DocumentSerializer(serializers.ModelSerializer):
    current_version = DocumentVersionSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Document
        fields = [
            "id",
            "student",
            "title",
            "category",
            "sensitive",
            "current_version",
            "created_at",
            "updated_at",
        ]


class DocumentUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="Checked like a page upload: size, type from bytes.")
    category = serializers.ChoiceField(choices=Document.Category.choices)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    sensitive = serializers.BooleanField(required=False, default=False)
    student = SchoolScopedField(
        scope="students",
        queryset=Student.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Empty for a document of the school itself.",
    )
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class DownloadLinkSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="Short-lived; follow it at once.")
    expires_at = serializers.DateTimeField()
    via = serializers.ChoiceField(choices=["local", "s3", "gcs"])


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
