"""Manage the backup encryption keyset."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Manage the Tink keyset that encrypts backups (file: BACKUP_KEYSET_PATH). "
        "`create` makes a new keyset (refuses to replace one). `rotate` adds a new key and "
        "makes it the one new backups use; older keys stay in the file, so older backups stay "
        "restorable. `show` lists the key ids (never the key material). Copy the file to your "
        "secret store after create and after every rotate: without it no backup can be read."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["create", "rotate", "show"])

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        from backups.crypto import (
            BackupKeyError,
            keyset_create,
            keyset_describe,
            keyset_rotate,
            keyset_summary,
        )

        try:
            if action == "create":
                summary = keyset_create()
                self.stdout.write(self.style.SUCCESS(f"Created {summary.path}."))
            elif action == "rotate":
                summary = keyset_rotate()
                self.stdout.write(
                    self.style.SUCCESS(
                        f"New primary key {summary.primary_key_id}; {len(summary.keys) - 1} older "
                        "key(s) kept for older backups."
                    )
                )
            else:
                summary = keyset_summary()
        except BackupKeyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(keyset_describe(summary))
        if action != "show":
            self.stdout.write(
                "Now copy this file to your secret store (see README, 'Backups and restore')."
            )
