from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and security"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from .services import session_start

        # Decided once per log-in (force_login in tests included), so an ordinary request
        # pays no query for it; a session that predates this code decides on first use.
        user_logged_in.connect(session_start, dispatch_uid="accounts.session_start")
