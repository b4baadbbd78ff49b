from __future__ import annotations

from django.urls import path

from . import views

app_name = "students"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("school/switch/", views.switch_school, name="switch_school"),
    path("students/", views.student_list, name="student_list"),
    path("students/export.csv", views.student_export, name="student_export"),
    path("students/import/", views.student_import, name="student_import"),
    path("students/<int:pk>/", views.student_detail, name="student_detail"),
    path("students/<int:pk>/report-card/<int:term_pk>/", views.report_card, name="report_card"),
    path("students/<int:pk>/move/", views.student_move, name="student_move"),
    path("students/<int:pk>/transcript/", views.transcript, name="transcript"),
    path("classes/", views.section_list, name="section_list"),
    path("attendance/missing/", views.missing_attendance, name="missing_attendance"),
    path("classes/<int:pk>/", views.section_detail, name="section_detail"),
    path("classes/<int:pk>/attendance/", views.attendance_take, name="attendance_take"),
    path("classes/<int:pk>/contacts/", views.guardian_contacts, name="guardian_contacts"),
    path("classes/<int:pk>/roster.<str:fmt>", views.roster_export, name="roster_export"),
    path("assessments/<int:pk>/grades/", views.grades_enter, name="grades_enter"),
]
