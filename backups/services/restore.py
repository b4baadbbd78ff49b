"""Restore a database backup, safely.

* The backup's applied migrations must all be known to this code; otherwise it came from a
  newer release and this code cannot migrate forward from it: refused, with the reason.
* A target holding any table is not overwritten without `force`.
* The default database is restored into a *new* database, migrated forward, and only then
  switched in: both databases are renamed in one transaction (the old one is kept as
  `<name>_before_restore_<stamp>` for a rollback). A failed restore leaves the live database
  untouched. Limits: the database role must own both databases (or be a superuser) and may
  create databases; every open connection to the live database is cut at the switch (web
  and worker processes reconnect on their next request, CONN_HEALTH_CHECKS); the old copy
  takes disk space until an operator drops it.
* `--target-database` restores straight into that database inside one transaction
  (`pg_restore --single-transaction`), so it too is all or nothing.
* Embedded mode (SQLite): the file is decrypted beside the target, checked with
  `PRAGMA integrity_check`, and renamed over the target in one atomic step.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.conf import settings
from django.db import connections

from audit.services import Actor, audit_record
from school_site.db import maintenance_settings

from ..models import BackupRun
from ..pipeline import Progress, pg_connect, pg_env, pg_params
from .verify import pg_restore_stream, plaintext_to_file, run_destinations

Say = Callable[[str], None]


class RestoreRefused(Exception):
    """The restore would be unsafe or cannot work; the message says why and what to do."""


@dataclass
class RestoreOutcome:
    database: str
    previous: str = ""
    migrated: bool = False


def known_migrations() -> set[tuple[str, str]]:
    """Every migration this code knows, including those a squashed migration replaces."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = set(loader.disk_migrations)
    for migration in loader.disk_migrations.values():
        known.update(migration.replaces or [])
    return known


def pending_migrations(run: BackupRun) -> list[tuple[str, str]]:
    """Migrations of this code that the backup's database has not applied yet."""
    from django.db.migrations.loader import MigrationLoader

    applied = {(app, name) for app, names in (run.migrations or {}).items() for name in names}
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    pending = []
    for key, migration in graph.nodes.items():
        if key in applied:
            continue
        if migration.replaces and all(tuple(r) in applied for r in migration.replaces):
            continue
        pending.append(key)
    return sorted(pending)


def check_migrations_forward(run: BackupRun) -> None:
    """Refuse a backup made by a newer release: it has migrations this code does not know,
    so this code cannot migrate forward from it (and would run against a schema it does not
    understand)."""
    known = known_migrations()
    unknown = sorted(
        f"{app}.{name}"
        for app, names in (run.migrations or {}).items()
        for name in names
        if (app, name) not in known
    )
    if unknown:
        listed = ", ".join(unknown[:8]) + (" …" if len(unknown) > 8 else "")
        raise RestoreRefused(
            f"Backup #{run.pk} was made by a newer version of Schoolhouse: its database has "
            f"{len(unknown)} migration(s) this code does not know ({listed}). This code cannot "
            "migrate forward from it. Deploy the release that made the backup (or a later one) "
            "and restore with that."
        )


def _relation_count(params: dict[str, str]) -> int | None:
    """Tables, views and sequences in the database; None when it does not exist."""
    import psycopg

    try:
        with pg_connect(params) as conn:
            return int(
                conn.execute(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
                ).fetchone()[0]
            )
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _migrate(database_url: str, say: Say, *, run: BackupRun) -> bool:
    """Bring the restored database to this code's schema, in a child process so this one's
    connections and caches never point at a half-switched database. Returns whether any
    migration had to run (none when the backup was made by this very release)."""
    pending = pending_migrations(run)
    if not pending:
        return False
    say(f"Applying {len(pending)} migration(s) of this release to the restored database…")
    env = {**os.environ, "DATABASE_URL": database_url, "DB_POOL": "false"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "migrate", "--no-input"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RestoreRefused(f"migrate failed on the restored database: {result.stderr[-2000:]}")
    return True


def _url(params: dict[str, str]) -> str:
    from urllib.parse import quote

    user = quote(params.get("user", ""), safe="")
    password = quote(params.get("password", ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = params.get("host", "")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgres://{auth}{host}{port}/{params['dbname']}"


def _copy_run_history(source: dict[str, str], target: dict[str, str]) -> None:
    """The restored database knows only the runs up to its dump; bring over every BackupRun
    the live database knew, so the history (and the objects it points to) is not lost."""
    from psycopg.types.json import Jsonb

    fields = [f for f in BackupRun._meta.concrete_fields]
    columns = [f.column for f in fields]
    with pg_connect(source) as src:
        rows = src.execute(
            "SELECT " + ", ".join(f'"{c}"' for c in columns) + " FROM backups_backuprun"  # noqa: S608
        ).fetchall()
    json_columns = {f.column for f in fields if f.get_internal_type() == "JSONField"}
    with pg_connect(target, autocommit=False) as dst:
        dst.execute("DELETE FROM backups_backuprun")
        if rows:
            placeholders = ", ".join(["%s"] * len(columns))
            query = (
                "INSERT INTO backups_backuprun ("  # noqa: S608
                + ", ".join(f'"{c}"' for c in columns)
                + f") VALUES ({placeholders})"
            )
            with dst.cursor() as cur:
                cur.executemany(
                    query,
                    [
                        [
                            Jsonb(v) if c in json_columns else v
                            for c, v in zip(columns, row, strict=True)
                        ]
                        for row in rows
                    ],
                )
        # requested_by may name a user the restored database does not have.
        dst.execute(
            "UPDATE backups_backuprun SET requested_by_id = NULL WHERE requested_by_id IS NOT NULL "
            "AND requested_by_id NOT IN (SELECT id FROM auth_user)"
        )
        dst.execute(
            "SELECT setval(pg_get_serial_sequence('backups_backuprun', 'id'), "
            "coalesce(max(id), 1)) FROM backups_backuprun"
        )
        dst.commit()


def _switch(live: dict[str, str], fresh: str, previous: str) -> None:
    """Rename live → previous and fresh → live in one transaction on the maintenance
    database, after cutting the connections that would block the rename."""
    from psycopg import sql

    for django_connection in connections.all():
        close_pool = getattr(django_connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
        django_connection.close()
    admin = {**live, "dbname": "postgres"}
    last_error: Exception | None = None
    for _attempt in range(5):
        try:
            with pg_connect(admin, autocommit=False) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                    [[live["dbname"], fresh]],
                )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(live["dbname"]), sql.Identifier(previous)
                    )
                )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(fresh), sql.Identifier(live["dbname"])
                    )
                )
                conn.commit()
                return
        except Exception as exc:  # a client reconnected between terminate and rename
            last_error = exc
    raise RestoreRefused(
        f"The restored copy is ready as database {fresh}, but switching it in failed: "
        f"{last_error}. Stop the web and worker processes and rename the databases by hand."
    )


def _restore_postgres(
    *,
    run: BackupRun,
    target_url: str | None,
    force: bool,
    progress: Progress | None,
    say: Say,
) -> RestoreOutcome:
    destination, entry = run_destinations(run)[0]
    key = entry.get("key") or run.object_key
    live = pg_params(maintenance_settings())
    if target_url:
        config = environ.Env.db_url_config(target_url)
        if config.get("ENGINE") != "django.db.backends.postgresql":
            raise RestoreRefused("--target-database must be a postgres:// URL for this backup.")
        target = pg_params(config)
        relations = _relation_count(target)
        if relations is None:
            from psycopg import sql

            with pg_connect({**target, "dbname": "postgres"}) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target["dbname"])))
            relations = 0
        if relations and not force:
            raise RestoreRefused(
                f"Database {target['dbname']} is not empty ({relations} tables, views or "
                "sequences). Add --force to replace the objects the backup contains."
            )
        say(f"Restoring backup #{run.pk} from {destination.name} into {target['dbname']}…")
        args = ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
        if relations:
            args += ["--clean", "--if-exists"]
        pg_restore_stream(
            run_key_id=run.key_id,
            destination=destination,
            key=key,
            size=run.stored_size,
            sha256=run.sha256,
            args=[*args, "-d", target["dbname"]],
            env=pg_env(target),
            progress=progress,
        )
        migrated = _migrate(_url(target), say, run=run)
        return RestoreOutcome(database=target["dbname"], migrated=migrated)

    relations = _relation_count(live) or 0
    if relations and not force:
        raise RestoreRefused(
            f"The live database {live['dbname']} is not empty ({relations} tables, views or "
            "sequences). Add --force to replace it (it is kept under another name), or "
            "restore elsewhere with --target-database."
        )
    stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y%m%d%H%M%S")
    base = live["dbname"][:40]
    fresh, previous = f"{base}_restore_{stamp}", f"{base}_before_restore_{stamp}"
    from psycopg import sql

    with pg_connect({**live, "dbname": "postgres"}) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(fresh)))
    target = {**live, "dbname": fresh}
    try:
        say(f"Restoring backup #{run.pk} from {destination.name} into new database {fresh}…")
        pg_restore_stream(
            run_key_id=run.key_id,
            destination=destination,
            key=key,
            size=run.stored_size,
            sha256=run.sha256,
            args=["--no-owner", "--no-privileges", "--exit-on-error", "-d", fresh],
            env=pg_env(target),
            progress=progress,
        )
        migrated = _migrate(_url(target), say, run=run)
        _copy_run_history(live, target)
    except BaseException:
        with contextlib.suppress(Exception), pg_connect({**live, "dbname": "postgres"}) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(fresh))
            )
        raise
    say(f"Switching: {live['dbname']} → {previous}, {fresh} → {live['dbname']}…")
    _switch(live, fresh, previous)
    return RestoreOutcome(database=live["dbname"], previous=previous, migrated=migrated)


def _restore_sqlite(
    *, run: BackupRun, target_url: str | None, force: bool, progress: Progress | None, say: Say
) -> RestoreOutcome:
    destination, entry = run_destinations(run)[0]
    if target_url:
        config = environ.Env.db_url_config(target_url)
        if config.get("ENGINE") != "django.db.backends.sqlite3":
            raise RestoreRefused("--target-database must be a sqlite:/// URL for this backup.")
        path = Path(config["NAME"])
    else:
        path = Path(connections["default"].settings_dict["NAME"])
    if path.exists() and path.stat().st_size > 0:
        conn = sqlite3.connect(path)
        try:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master "
                "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
        finally:
            conn.close()
        if tables and not force:
            raise RestoreRefused(
                f"{path} is not empty ({tables} tables). Add --force to replace it."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.restore-{os.getpid()}")
    try:
        say(f"Restoring backup #{run.pk} from {destination.name} into {path}…")
        plaintext_to_file(
            run=run,
            destination=destination,
            key=entry.get("key") or run.object_key,
            path=partial,
            progress=progress,
        )
        conn = sqlite3.connect(partial)
        try:
            if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise RestoreRefused("The restored SQLite file fails its integrity check.")
        finally:
            conn.close()
        connections.close_all()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    migrated = _migrate(f"sqlite:///{path}", say, run=run)
    return RestoreOutcome(database=str(path), migrated=migrated)


def backup_restore(
    *,
    run: BackupRun,
    target_url: str | None = None,
    force: bool = False,
    actor: Actor = None,
    progress: Progress | None = None,
    say: Say = lambda message: None,
) -> RestoreOutcome:
    """Restore database backup `run` (see the module docstring for the guarantees)."""
    if run.kind != BackupRun.Kind.DATABASE:
        raise RestoreRefused(f"Backup #{run.pk} is a media backup; restore it with --media.")
    if not run.is_restorable:
        raise RestoreRefused(f"Backup #{run.pk} is {run.status}; only confirmed backups restore.")
    check_migrations_forward(run)
    live_engine = "postgresql" if connections["default"].vendor == "postgresql" else "sqlite"
    if not target_url and run.engine != live_engine:
        raise RestoreRefused(
            f"Backup #{run.pk} is a {run.engine} backup and the live database is {live_engine}: "
            "restore it elsewhere with --target-database."
        )
    restore: Any = _restore_postgres if run.engine == "postgresql" else _restore_sqlite
    target_desc = target_url.split("@")[-1] if target_url else "the live database"
    outcome: RestoreOutcome = restore(
        run=run, target_url=target_url, force=force, progress=progress, say=say
    )
    if not target_url:
        # Everything cached (who may see what, school figures, report PDFs, sessions' cached
        # copies) describes the database just replaced: a role granted after the backup
        # must not outlive its restore by a cache timeout.
        from django.core.cache import cache

        with contextlib.suppress(Exception):
            cache.clear()
    with contextlib.suppress(Exception):  # the audit trail lives in the database just replaced
        audit_record(
            actor=actor, action="backup_restore", target=run, changes={"target": target_desc}
        )
    return outcome
