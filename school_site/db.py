"""The two PostgreSQL roles: the application's, bound by row-level security, and the
maintenance role (the tables' owner), which migrations, backups, restores, drills and the
SQLite upgrade use.

`manage.py` calls `choose_role` before Django loads the settings, so an operator's
`migrate` or `restore_backup` connects as the maintenance role without a flag to forget;
everything else (web, worker, beat, every other command) connects as the application.
Subprocesses (`pg_dump`, `pg_restore`, `pgbackrest`) and side connections of the backup code
take `maintenance_settings()`.
"""

from __future__ import annotations

import os
from typing import Any

# Commands that need to see (or write) every school's rows or to change the schema.
MAINTENANCE_COMMANDS = frozenset(
    {
        "migrate",
        "createcachetable",
        "flush",
        "sqlflush",
        "dbshell",
        "backup_now",
        "restore_backup",
        "verify_backup",
        "list_backups",
        "prune_backups",
        "migrate_from_sqlite",
        "pitr",
        "recover_server",
    }
)


def choose_role(argv: list[str]) -> None:
    """Ask the settings for the maintenance role when `argv` runs a maintenance command."""
    if len(argv) > 1 and argv[1] in MAINTENANCE_COMMANDS:
        os.environ["SCHOOLHOUSE_DB_ROLE"] = "maintenance"


def maintenance_settings() -> dict[str, Any]:
    """The live database's connection settings with the maintenance role's credentials.

    The database's name is the live connection's (a test run's database, a restore's
    target), the role, password, host and port the maintenance URL's."""
    from django.conf import settings
    from django.db import connections

    live = dict(connections["default"].settings_dict)
    maintenance = settings.DATABASE_MAINTENANCE
    if connections["default"].vendor != "postgresql":
        return live
    for key in ("USER", "PASSWORD", "HOST", "PORT"):
        live[key] = maintenance.get(key) or live.get(key)
    return live
