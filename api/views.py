"""The API's endpoints. Thin adapters: scope the queryset through `request.access` (the same
`SchoolAccess` the pages use), validate with a serializer, call one service, answer.

Reads of student records are written to the audit trail like page views: a record's detail
as "view", a list page as "api_list" naming the rows it disclosed.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Prefetch, QuerySet
from django.http import HttpResponseBase
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.decorators import (
    action,
    api_view,
    authentication_classes,
    permission_classes,
    schema,
    throttle_classes,
)
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from audit.services import audit_record
from files import selectors as file_selectors
from files import services as file_services
from files.models import Document, DocumentVersion
from files.sealing import SealingUnavailable
from files.storage import ContentMissing, StorageUnavailable
from files.uploads import upload_refusal
from students import services
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
from students.tenancy import SchoolAccess

from . import filters as api_filters
from . import serializers as s


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Storage is unavailable; try again later."


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The document cannot be downloaded now."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the services' Django ValidationError answered as a 400. Every
    error body is an object: a refusal without a field goes under "non_field_errors", as
    DRF's own serializers put it."""
    if isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = serializers.ValidationError(detail)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        response.data = {"non_field_errors": response.data}
    return response


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
@schema(None)
def not_found(request: Request, *args: Any, **kwargs: Any) -> Response:
    """Any other URL under /api/: a JSON 404, not the site's HTML page."""
    return Response({"detail": "No such endpoint."}, status=status.HTTP_404_NOT_FOUND)


class SchoolScopedViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Common ground of every endpoint: list and detail reads, the caller's school access,
    the role permission to check (`perm_model`, `action_perms`), and the audit of record
    reads (`audit_reads`)."""

    perm_model: str = ""
    action_perms: dict[str, str | dict[str, str]] = {}
    audit_reads = False
    filter_backends = [
        DjangoFilterBackend,
        filters.SearchFilter,
        filters.OrderingFilter,
    ]
    ordering = ["id"]

    @property
    def access(self) -> SchoolAccess:
        # The permission class has refused the request before any view code runs when the
        # caller has no access, so it is always there here.
        return self.request.access  # type: ignore[attr-defined,return-value]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        if self.audit_reads:
            rows = response.data.get("results", []) if isinstance(response.data, dict) else []
            audit_record(
                actor=request.user,
                action="api_list",
                school_id=self.access.school.pk,
                changes={"endpoint": self.basename, "ids": [row["id"] for row in rows]},
            )
        return response

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        if self.audit_reads:
            # FERPA: a school must be able to say who has seen a child's record.
            audit_record(actor=request.user, action="view", target=instance)
        return Response(self.get_serializer(instance).data)


# ---------------------------------------------------------------------------------------------
# Students, guardians
# ---------------------------------------------------------------------------------------------
class StudentViewSet(
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    SchoolScopedViewSet,
):
    """Students of the school; a teacher sees only the students of their own sections.
    Students are never deleted through the API: withdraw or transfer them on the pages."""

    queryset = Student.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.StudentSerializer
    filterset_class = api_filters.StudentFilter
    search_fields = ["student_number", "first_name", "last_name", "preferred_name"]
    ordering_fields = ["id", "last_name", "student_number", "date_of_birth", "updated_at"]
    perm_model = "students.student"
    audit_reads = True

    def get_queryset(self) -> QuerySet:
        return self.access.students()

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.instance = services.student_create(
            school=self.access.school, actor=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        serializer.instance = services.student_update(
            student=serializer.instance, actor=self.request.user, **serializer.validated_data
        )


class GuardianViewSet(SchoolScopedViewSet):
    """Guardians of the students the caller may see, with their links to those students."""

    queryset = Guardian.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.GuardianSerializer
    filterset_class = api_filters.GuardianFilter
    search_fields = ["first_name", "last_name", "email", "phone"]
    ordering_fields = ["id", "last_name"]
    perm_model = "students.guardian"
    audit_reads = True

    def get_queryset(self) -> QuerySet:
        students = self.access.students().values("pk")
        qs = Guardian.objects.for_school(self.access.school)
        if self.access.is_teacher:
            qs = qs.filter(
                pk__in=StudentGuardian.objects.filter(student__in=students).values("guardian_id")
            )
        return qs.prefetch_related(
            Prefetch(
                "student_links",
                queryset=StudentGuardian.objects.filter(student__in=students).order_by(
                    "student_id"
                ),
                to_attr="visible_links",
            )
        )


# ---------------------------------------------------------------------------------------------
# Sections, enrollments
# ---------------------------------------------------------------------------------------------
class SectionViewSet(SchoolScopedViewSet):
    """Classes of the school; a teacher sees the sections they teach."""

    queryset = Section.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.SectionSerializer
    filterset_class = api_filters.SectionFilter
    search_fields = ["name", "room"]
    ordering_fields = ["id", "name"]
    perm_model = "students.section"

    def get_queryset(self) -> QuerySet:
        return self.access.sections().select_related("academic_year", "grade_level")


class EnrollmentViewSet(
    mixins.CreateModelMixin,
    SchoolScopedViewSet,
):
    """Enrollments of visible students. Creating one ends the student's open enrollment of
    the same academic year, as moving a student on the pages does."""

    queryset = Enrollment.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.EnrollmentSerializer
    filterset_class = api_filters.EnrollmentFilter
    ordering_fields = ["id", "started_on"]
    perm_model = "students.enrollment"
    audit_reads = True

    def get_queryset(self) -> QuerySet:
        return Enrollment.objects.for_school(self.access.school).filter(
            student__in=self.access.students().values("pk")
        )

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = services.student_enrol(
            student=data["student"],
            section=data["section"],
            on=data.get("started_on"),
            actor=self.request.user,
        )


# ---------------------------------------------------------------------------------------------
# Attendance
# ---------------------------------------------------------------------------------------------
class AttendanceViewSet(SchoolScopedViewSet):
    """Attendance marks of visible students; `bulk` records a section's register."""

    queryset = AttendanceRecord.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.AttendanceRecordSerializer
    filterset_class = api_filters.AttendanceFilter
    ordering_fields = ["id", "date"]
    perm_model = "students.attendancerecord"
    action_perms = {"bulk": "students.add_attendancerecord"}
    audit_reads = True

    def get_queryset(self) -> QuerySet:
        return AttendanceRecord.objects.for_school(self.access.school).filter(
            student__in=self.access.students().values("pk")
        )

    @extend_schema(
        request=s.AttendanceBulkSerializer,
        responses={200: s.AttendanceBulkResultSerializer},
        summary="Record a section's attendance for one date and period",
    )
    @action(detail=False, methods=["post"], serializer_class=s.AttendanceBulkSerializer)
    def bulk(self, request: Request) -> Response:
        """Every student must be on the section's roster that day. Marks already recorded
        for that date and period are corrected. One statement, whatever the class size."""
        form = s.AttendanceBulkSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        marks = {
            m["student"]: services.AttendanceMark(status=m["status"], note=m["note"])
            for m in data["marks"]
        }
        services.attendance_record_bulk(
            section=data["section"],
            date=data["date"],
            period=data["period"],
            marks=marks,
            actor=request.user,
        )
        return Response(
            {
                "section": data["section"].pk,
                "date": data["date"],
                "period": data["period"],
                "recorded": len(marks),
            }
        )


# ---------------------------------------------------------------------------------------------
# Assessments, grades
# ---------------------------------------------------------------------------------------------
class AssessmentViewSet(
    mixins.CreateModelMixin,
    SchoolScopedViewSet,
):
    """Assessments of the caller's sections; `grades` reads or records their scores."""

    queryset = Assessment.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.AssessmentSerializer
    filterset_class = api_filters.AssessmentFilter
    search_fields = ["name"]
    ordering_fields = ["id", "due_on", "name"]
    perm_model = "students.assessment"
    # Reading scores needs view_grade, recording them change_grade (as the grade sheet).
    action_perms = {"grades": {"GET": "students.view_grade", "POST": "students.change_grade"}}

    def get_queryset(self) -> QuerySet:
        return Assessment.objects.for_school(self.access.school).filter(
            section__in=self.access.sections().values("pk")
        )

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        assessment = Assessment(school=self.access.school, **serializer.validated_data)
        serializer.instance = services.assessment_save(
            assessment=assessment, actor=self.request.user
        )

    @extend_schema(
        methods=["GET"],
        request=None,
        responses={200: s.GradeSerializer(many=True)},
        summary="The scores recorded for an assessment",
    )
    @extend_schema(
        methods=["POST"],
        request=s.GradeBulkSerializer,
        responses={200: s.GradeSerializer(many=True)},
        summary="Record scores of an assessment (changes any already recorded)",
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def grades(self, request: Request, pk: str | None = None) -> Response:
        assessment = self.get_object()
        if request.method == "POST":
            form = s.GradeBulkSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            services.grade_record_bulk(
                assessment=assessment,
                entries={
                    g["student"]: services.GradeEntry(score=g["score"], comment=g["comment"])
                    for g in form.validated_data["grades"]
                },
                actor=request.user,
            )
        grades = Grade.objects.filter(assessment=assessment).order_by("student_id")
        if request.method == "GET":
            audit_record(
                actor=request.user,
                action="api_list",
                target=assessment,
                changes={"endpoint": "assessment-grades", "rows": len(grades)},
            )
        return Response(s.GradeSerializer(grades, many=True).data)


class GradeViewSet(SchoolScopedViewSet):
    """Scores of the caller's sections' assessments."""

    queryset = Grade.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.GradeSerializer
    filterset_class = api_filters.GradeFilter
    ordering_fields = ["id", "updated_at"]
    perm_model = "students.grade"
    audit_reads = True

    def get_queryset(self) -> QuerySet:
        return Grade.objects.for_school(self.access.school).filter(
            assessment__section__in=self.access.sections().values("pk"),
            student__in=self.access.students().values("pk"),
        )


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------
def _storage_errors() -> tuple[type[BaseException], ...]:
    return (StorageUnavailable, SealingUnavailable, ContentMissing)


class DocumentViewSet(
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    SchoolScopedViewSet,
):
    """Document metadata, by the same rules as the pages: the school's documents; for a
    teacher those of their students; sensitive ones only for roles allowed to see them.
    Upload as multipart/form-data; DELETE moves a document to the trash."""

    queryset = Document.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.DocumentSerializer
    filterset_class = api_filters.DocumentFilter
    search_fields = ["title"]
    ordering_fields = ["id", "updated_at", "title"]
    perm_model = "files.document"
    audit_reads = True

    def get_queryset(self) -> QuerySet:
        return file_selectors.documents_visible(access=self.access).select_related(
            "current_version"
        )

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return s.DocumentUploadSerializer if self.action == "create" else s.DocumentSerializer

    @extend_schema(
        request={"multipart/form-data": s.DocumentUploadSerializer},
        responses={201: s.DocumentSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        refusal = upload_refusal(request._request)
        if refusal:
            raise serializers.ValidationError({"file": refusal})
        form = s.DocumentUploadSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            document = file_services.document_create(
                school=self.access.school,
                student=data["student"],
                title=data["title"],
                category=data["category"],
                sensitive=data["sensitive"],
                file=data["file"],
                comment=data["comment"],
                actor=request.user,
            )
        except _storage_errors() as exc:
            raise ServiceUnavailable(str(exc)) from exc
        # The service set the new current version on this very instance: no re-read needed.
        return Response(s.DocumentSerializer(document).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Model) -> None:
        file_services.document_delete(document=instance, actor=self.request.user)  # type: ignore[arg-type]


class DocumentVersionViewSet(SchoolScopedViewSet):
    """Every version of the documents the caller may see; `download` issues a short-lived
    link and records the disclosure, as the page's Download button does."""

    queryset = DocumentVersion.objects.none()  # the model, for the schema; rows: get_queryset
    serializer_class = s.DocumentVersionSerializer
    filterset_class = api_filters.DocumentVersionFilter
    ordering_fields = ["id", "number", "created_at"]
    perm_model = "files.documentversion"
    action_perms = {"download": "files.view_document"}

    def get_queryset(self) -> QuerySet:
        return DocumentVersion.objects.select_related("document", "stored").filter(
            document__in=file_selectors.documents_visible(access=self.access).values("pk")
        )

    @extend_schema(
        request=None,
        responses={
            200: s.DownloadLinkSerializer,
            409: OpenApiResponse(s.ErrorSerializer, description="Trashed, scanning or infected."),
            503: OpenApiResponse(s.ErrorSerializer, description="Storage is unavailable."),
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def download(self, request: Request, pk: str | None = None) -> Response:
        version = self.get_object()
        try:
            link = file_services.document_download_link_issue(
                version=version,
                actor=request.user,  # type: ignore[arg-type]
            )
        except file_services.DocumentUnavailable as exc:
            raise Conflict(str(exc)) from exc
        except _storage_errors() as exc:
            raise ServiceUnavailable(str(exc)) from exc
        url = link.url
        if link.via == "local":
            # The pages' link needs a browser session; an integration follows ours with its
            # token. Same signed token: it names the version, user and school, and expires.
            url = url.replace(reverse("files:serve"), reverse("api:document-serve"), 1)
        return Response({"url": url, "expires_at": link.expires_at, "via": link.via})


class DocumentServeView(APIView):
    """Send locally stored content for a signed link from `download`. The checks are the
    page's own (files.views.serve): the link's user and school must be the caller's."""

    required_permission = "files.view_document"

    @extend_schema(
        parameters=[OpenApiParameter("t", OpenApiTypes.STR, required=True)],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            403: OpenApiResponse(description="The link expired, is not valid, or is not yours."),
        },
    )
    def get(self, request: Request) -> HttpResponseBase:
        from files.views import serve

        # The page view reads the Django request: give it the token's user (a session
        # request already carries it).
        request._request.user = request.user
        return serve(request._request)
