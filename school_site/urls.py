"""Root URLconf."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.admin import admin_permission_with_otp

admin.site.site_header = "Schoolhouse administration"
admin.site.site_title = "Schoolhouse"
admin.site.index_title = "Management console"
# Administrators reach the admin only after their two-factor code (accounts.middleware
# normally sends them to the code page first; this holds even without it).
admin.site.has_permission = admin_permission_with_otp(admin.site.has_permission)  # type: ignore[method-assign,assignment]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="students:dashboard", permanent=False)),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include("students.urls")),
    path("", include("files.urls")),
    path("", include("reportcards.urls")),
    path("", include("monitoring.urls")),
    path("", include("backups.urls")),
    path("", include("audit.urls")),
    path("api/", include("api.urls")),
]

if settings.DEBUG_TOOLBAR:
    from debug_toolbar.toolbar import debug_toolbar_urls

    urlpatterns += debug_toolbar_urls()
