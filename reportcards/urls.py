from __future__ import annotations

from django.urls import path

from . import views

app_name = "reportcards"

urlpatterns = [
    path("classes/<int:pk>/report-cards/", views.section_report_cards, name="section"),
    path("report-cards/<int:pk>/", views.batch_detail, name="batch_detail"),
    path("report-cards/<int:pk>/progress.json", views.batch_progress, name="batch_progress"),
]
