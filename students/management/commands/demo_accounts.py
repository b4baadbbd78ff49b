"""Print the demo accounts (and make sure the district administrator exists)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from students.demo import demo_admin_ensure
from students.models import StaffMember
from students.row_security import every_school


class Command(BaseCommand):
    help = (
        "Create the district administrator account `admin` if missing and print the demo "
        "log-ins with their password (DEMO_PASSWORD, or the one generated in var/)."
    )

    @every_school  # the demo district: every school's records
    def handle(self, *args: Any, **options: Any) -> None:
        password = demo_admin_ensure()
        self.stdout.write(self.style.SUCCESS(f"Demo accounts (password for all: {password})"))
        self.stdout.write(f"  {'admin':<24} district administrator, all schools, admin console")
        shown = (
            StaffMember.objects.filter(
                user__username__regex=r"^(principal|registrar|auditor|teacher1)-"
            )
            .select_related("user", "school")
            .order_by("school__name", "role")[:12]
        )
        for member in shown:
            self.stdout.write(
                f"  {member.user.username:<24} {member.get_role_display()} at {member.school}"
            )
        # Administrators must use two-factor authentication (accounts app).
        self.stdout.write(
            "Administrators (admin and principal-*) set up two-factor authentication at their "
            "first log-in: have an authenticator app ready (Google Authenticator, FreeOTP...) "
            "to scan the QR code, and keep the backup codes it shows."
        )
