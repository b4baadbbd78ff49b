"""/api/v1/: the router's endpoints, the OpenAPI schema and its documentation pages.

A later, incompatible version gets its own prefix (v2/) beside this one, so integrations
move when they are ready."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from drf_spectacular.views import SpectacularSwaggerSplitView as SwaggerView
from rest_framework.routers import DefaultRouter

# Registers the OpenAPI extension of our token authentication. Imported with the URLs, not in
# AppConfig.ready(): drf-spectacular costs ~14 MiB, which commands such as backup_now and
# restore_backup (target: under 100 MB) never need.
from . import schema, views  # noqa: F401

app_name = "api"


class Router(DefaultRouter):
    # No `.json` twin of every route: one URL per resource keeps the schema and the
    # tenancy walker (tests/students/test_tenancy.py) simple.
    include_format_suffixes = False


router = Router()
router.register("students", views.StudentViewSet, basename="student")
router.register("guardians", views.GuardianViewSet, basename="guardian")
router.register("sections", views.SectionViewSet, basename="section")
router.register("enrollments", views.EnrollmentViewSet, basename="enrollment")
router.register("attendance", views.AttendanceViewSet, basename="attendance")
router.register("assessments", views.AssessmentViewSet, basename="assessment")
router.register("grades", views.GradeViewSet, basename="grade")
router.register("documents", views.DocumentViewSet, basename="document")
router.register("document-versions", views.DocumentVersionViewSet, basename="document-version")

urlpatterns = [
    # Before the router, whose documents/<pk>/ would otherwise claim "serve".
    path("v1/documents/serve/", views.DocumentServeView.as_view(), name="document-serve"),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI, its assets from the sidecar package (no CDN). The split view serves its
    # script as a file, so a strict Content-Security-Policy (no inline script) lets it run.
    # (drf-spectacular's Redoc page is left out: its template loads fonts from Google.)
    path("v1/docs/", SwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("v1/", include(router.urls)),
    # Unnamed, so the URL walker of the tenancy tests passes it by.
    re_path(r"^", views.not_found),
]
