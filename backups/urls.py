from __future__ import annotations

from django.urls import path

from . import views

app_name = "backups"

urlpatterns = [
    path("backups/download/<str:token>/", views.download, name="download"),
]
