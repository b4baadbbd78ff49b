from __future__ import annotations

from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("health/live/", views.liveness, name="liveness"),
    path("health/ready/", views.ReadinessView.as_view(), name="readiness"),
    path("health/", views.HealthDashboardView.as_view(), name="health"),
    path("metrics", views.metrics, name="metrics"),
    path("monitoring/performance/", views.performance, name="performance"),
]
