"""Remove a user's second factor (a lost or replaced phone)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from accounts.services import two_factor_reset


class Command(BaseCommand):
    help = (
        "Remove the authenticator app and backup codes of USERNAME, for a lost or replaced "
        "phone. At their next log-in they are asked to set up a new authenticator. Confirm "
        "the person's identity first, as you would for a password reset. Recorded in the "
        "audit trail."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username", help="The account whose two-factor devices to remove.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        removed = two_factor_reset(user=user, actor=None)
        self.stdout.write(
            self.style.SUCCESS(
                f"Removed {removed} two-factor device(s) of {user.username}; they will set up "
                "a new authenticator at their next log-in."
            )
        )
