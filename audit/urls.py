"""Audit trail pages (issue 7)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "audit"
urlpatterns = [
    path("audit/", views.trail, name="trail"),
    path("audit/export.csv", views.trail_export, name="trail_export"),
    path("students/<int:pk>/disclosures/", views.student_disclosures, name="student_disclosures"),
    path(
        "students/<int:pk>/subject-access.zip",
        views.subject_access_export,
        name="subject_access_export",
    ),
]
