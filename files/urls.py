from __future__ import annotations

from django.urls import path

from . import views

app_name = "files"

urlpatterns = [
    path("documents/", views.school_documents, name="school_documents"),
    # The download token travels in the query string, like S3's and GCS's signatures: it is
    # a credential, not an object id.
    path("documents/serve/", views.serve, name="serve"),
    path("documents/<int:pk>/", views.document_detail, name="document_detail"),
    path("documents/<int:pk>/versions/new/", views.version_upload, name="version_upload"),
    path("documents/<int:pk>/delete/", views.document_delete, name="document_delete"),
    path("documents/versions/<int:pk>/download/", views.version_download, name="version_download"),
    path("documents/versions/<int:pk>/restore/", views.version_restore, name="version_restore"),
    path(
        "students/<int:pk>/documents/new/",
        views.student_document_upload,
        name="student_document_upload",
    ),
]
