"""Issue an API token from the command line (provisioning scripts, first set-up)."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api.models import ApiToken
from api.services import api_token_create
from students.models import School
from students.row_security import acting_for


class Command(BaseCommand):
    help = (
        "Create an API token for a user at a school and print it. The token is shown only "
        "here, once: store it in the integration's secret store. Revoke it in the admin "
        "console (API tokens) when it is no longer needed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="Username of the token's holder.")
        parser.add_argument("--school", required=True, help="Code of the school, e.g. north.")
        parser.add_argument("--name", required=True, help="What uses it, e.g. 'SIS sync'.")
        parser.add_argument(
            "--scope",
            choices=ApiToken.Scope.values,
            default=ApiToken.Scope.READ,
            help="read (default) or read_write.",
        )
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Days until the token stops working; default: it does not expire.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = User.objects.get(username=options["user"])
            school = School.objects.get(code=options["school"])
        except (User.DoesNotExist, School.DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc
        days = options["expires_in_days"]
        expires_at = timezone.now() + datetime.timedelta(days=days) if days else None
        # Row-level security: the token is written in that school alone.
        with acting_for([school.pk]):
            try:
                token, raw = api_token_create(
                    user=user,
                    school=school,
                    name=options["name"],
                    scope=options["scope"],
                    expires_at=expires_at,
                    actor=None,
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
        self.stderr.write(
            f"Token {token.prefix}… for {user.get_username()} at {school} "
            f"({token.get_scope_display()}). It is not shown again:"
        )
        self.stdout.write(raw)
