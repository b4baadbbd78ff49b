"""The second wall between schools: PostgreSQL row-level security on every school-owned table.

Every table with a school column gets one policy, `schoolhouse_school_wall`, that
admits a row only when its school is one the current session acts for. What a session acts
for is the setting `schoolhouse.schools`: a PostgreSQL array of school ids (`{3}`), `*` for
every school, or empty (nothing: the default, so a forgotten setting fails closed). The
application writes it from a context variable:

- the tenancy middleware, for the request's school (`acting_for`, via `students.tenancy`);
- Celery: a task queued inside a context carries it in a message header and runs inside it;
  beat's jobs start with none, and the jobs that span the district say so (`every_school`);
- commands that work on school data say which schools they act for.

The policies bind the application's role (DATABASE_URL), not the tables' owner (the
maintenance role: migrations, backups, restores), so neither wall alone is trusted: a query
that forgets `for_school` still sees one school. The setting is a guard against the
application's own mistakes, not a credential: the application's role may change it, as it
must; what it cannot do is read another school's rows while it acts for one.

Session-level `set_config` (not `SET LOCAL`): Django runs in autocommit outside `atomic`
blocks, where a transaction-local value would last one statement. The database backend
(school_site.postgres) brings the session's values up to date before each cursor, so a
connection from the pool never carries another request's school into this one.

A model may admit more rows for reads (`row_security_read_also`: a user's own staff
memberships before any school is chosen, an API token by the hash being checked) or for
both (`row_security_also`: the district's own audit entries, which belong to no school).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from django.apps import apps as global_apps
from django.conf import settings
from django.db import connections
from django.db.models import Model

POLICY = "schoolhouse_school_wall"
EVERY_SCHOOL = "*"
SETTINGS = ("schoolhouse.schools", "schoolhouse.user", "schoolhouse.token")

# What the current request, task or command acts for: (schools, user id, token hash).
_acting: ContextVar[tuple[str, str, str]] = ContextVar("schoolhouse_acting", default=("", "", ""))

F = TypeVar("F", bound=Callable[..., Any])


def _schools_value(schools: Iterable[int] | str) -> str:
    if schools == EVERY_SCHOOL:
        return EVERY_SCHOOL
    ids = sorted({int(s) for s in schools})  # ints only: nothing else reaches the setting
    return "{" + ",".join(str(i) for i in ids) + "}"


def acting_value() -> tuple[str, str, str]:
    return _acting.get()


@contextlib.contextmanager
def acting_for(
    schools: Iterable[int] | str | None = None,
    *,
    user_id: int | None = None,
    token_hash: str | None = None,
) -> Iterator[None]:
    """Act for `schools` (ids, or EVERY_SCHOOL) inside the block; with `user_id`, also see
    that user's own staff memberships; with `token_hash`, the API token of that hash.
    What is not given keeps its current value. The previous values come back afterwards."""
    current = _acting.get()
    value = (
        current[0] if schools is None else _schools_value(schools),
        current[1] if user_id is None else str(int(user_id)),
        current[2] if token_hash is None else token_hash,
    )
    token = _acting.set(value)
    try:
        yield
    finally:
        _acting.reset(token)


@contextlib.contextmanager
def acting_for_nothing() -> Iterator[None]:
    """A request's or a task's scope: it starts acting for no school, and whatever it comes
    to act for ends with it."""
    token = _acting.set(("", "", ""))
    try:
        yield
    finally:
        _acting.reset(token)


def acting_scope_enter(schools: str) -> Token[tuple[str, str, str]]:
    """A task's scope (school_site.celery): the schools its sender acted for, as carried
    in its message ("" for none); `acting_scope_exit` ends it."""
    if schools and schools != EVERY_SCHOOL:
        schools = _schools_value(int(s) for s in schools.strip("{}").split(",") if s)
    return _acting.set((schools, "", ""))


def acting_scope_exit(token: Token[tuple[str, str, str]]) -> None:
    _acting.reset(token)


def act_for(schools: Iterable[int] | str) -> None:
    """Act for `schools` from here to the end of the enclosing `acting_for` block (the
    request's or the task's): the tenancy middleware calls it once it knows the school."""
    _acting.set((_schools_value(schools), *_acting.get()[1:]))


def every_school(func: F) -> F:
    """A job of the whole district (beat's nightly work): it acts for every school."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with acting_for(EVERY_SCHOOL):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# The database backend (school_site.postgres) sends this before a cursor whenever the values
# differ from those the connection last got.
SET_ACTING_SQL = "SELECT " + ", ".join(f"set_config('{name}', %s, false)" for name in SETTINGS)


def is_policy_refusal(exc: BaseException) -> bool:
    """Whether a database error is a row-level security policy refusing a row (SQLSTATE
    42501 with the policy's message): a page or the API answers it as "not allowed"."""
    for error in (exc, exc.__cause__):
        if getattr(error, "sqlstate", None) == "42501" and "row-level security" in str(error):
            return True
    return False


# --- the policies ------------------------------------------------------------------------------
# Two one-expression SQL functions, which PostgreSQL inlines into each policy (no FROM, no
# sub-select): a function that read the schools table for "*" could not be inlined, and was
# parsed and planned again in every statement, once per table (bench/load/rls_explain.py:
# 60-115 us a table a statement). Each runs once per statement, as an InitPlan.
ACTING_FUNCTIONS = (
    """
CREATE OR REPLACE FUNCTION schoolhouse_acting_schools() RETURNS bigint[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN coalesce(current_setting('schoolhouse.schools', true), '') IN ('', '*')
        THEN '{}'::bigint[]
        ELSE current_setting('schoolhouse.schools', true)::bigint[]
    END
$$
""",
    """
CREATE OR REPLACE FUNCTION schoolhouse_acting_for_every_school() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(current_setting('schoolhouse.schools', true), '') = '*'
$$
""",
)


def school_columns(model: type[Model]) -> list[str]:
    """The model's school columns: its foreign keys to School, or the plain integer columns
    it names in `row_security_columns` (the audit trail outlives the rows it describes)."""
    if declared := getattr(model, "row_security_columns", ()):
        return list(declared)
    school = global_apps.get_model("students", "School")
    return [
        f.column
        for f in model._meta.local_fields
        if f.many_to_one and f.related_model is school and f.column
    ]


def school_owned_models() -> list[type[Model]]:
    """Every concrete model with a school column (School itself is the tenant)."""
    return [
        model
        for model in global_apps.get_models()
        if model._meta.managed and not model._meta.proxy and school_columns(model)
    ]


def policy_expressions(model: type[Model]) -> tuple[str, str]:
    """(USING, WITH CHECK) of the model's policy."""
    columns = school_columns(model)
    # In a scalar subquery the function runs once per statement (an InitPlan), not per row.
    acting = "(SELECT schoolhouse_acting_schools())::bigint[]"
    admitted = " OR ".join(
        ["(SELECT schoolhouse_acting_for_every_school())"]
        + [f"{column} = ANY ({acting})" for column in columns]
    )
    write = admitted
    if also := getattr(model, "row_security_also", ""):
        write = f"{admitted} OR ({also})"
    read = write
    if read_also := getattr(model, "row_security_read_also", ""):
        read = f"{write} OR ({read_also})"
    return read, write


def row_security_sync(using: str = "default", app_role: str = "") -> list[str]:
    """Create or replace the policy of every school-owned table, turn row-level security on
    for it, and grant the application's role what it needs. Idempotent; runs after every
    `migrate` as the tables' owner. Returns the tables it covered."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []  # SQLite has no row-level security: the application's wall stands alone
    tables = []
    with connection.cursor() as cursor:
        # Policies are the owner's to set: the application's role (a test database's flush
        # emits post_migrate as well) leaves them as they are.
        cursor.execute(
            "SELECT tableowner = current_user FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename = 'students_student'"
        )
        row = cursor.fetchone()
        if row is None or not row[0]:
            return []
        for function in ACTING_FUNCTIONS:
            cursor.execute(function)
        for model in school_owned_models():
            table = connection.ops.quote_name(model._meta.db_table)
            read, write = policy_expressions(model)
            cursor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            cursor.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
            cursor.execute(f"CREATE POLICY {POLICY} ON {table} USING ({read}) WITH CHECK ({write})")
            tables.append(model._meta.db_table)
        if app_role:
            _grant(cursor, connection.ops.quote_name(app_role))
    return tables


def _grant(cursor: Any, role: str) -> None:
    """The application's role reads and writes rows; it owns nothing, so it can neither
    change a policy nor turn one off."""
    cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    cursor.execute(f"GRANT EXECUTE ON FUNCTION schoolhouse_acting_schools() TO {role}")
    cursor.execute(f"GRANT EXECUTE ON FUNCTION schoolhouse_acting_for_every_school() TO {role}")
    cursor.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
        f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
    )
    cursor.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
        f" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}"
    )


def app_role() -> str:
    """The application's role when it is not the one running migrations ("" otherwise)."""
    app_user = settings.DATABASE_APP_USER
    if not app_user:
        return ""
    return app_user if app_user != connections["default"].settings_dict.get("USER") else ""


def row_security_sync_after_migrate(using: str = "default", **kwargs: Any) -> None:
    # Connected for the students app alone: post_migrate fires per app once the whole plan
    # has run, so every table of every app exists by then.
    row_security_sync(using=using, app_role=app_role())


def row_security_problems(using: str = "default") -> tuple[list[str], list[str]]:
    """(errors, warnings) about the second wall on this connection: a school table without
    its policy is an error; an application role that the policies do not bind (a superuser,
    the tables' owner, BYPASSRLS: a one-role install) is a warning. Two catalogue queries."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return [], []  # embedded mode has the application's wall alone (README says so)
    tables = {m._meta.db_table for m in school_owned_models()}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
            " WHERE c.relname = ANY(%s) AND c.relrowsecurity"
            " AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = %s)",
            [sorted(tables), POLICY],
        )
        guarded = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT r.rolsuper, r.rolbypassrls, current_user,"
            " EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = 'public'"
            " AND t.tablename = 'students_student' AND t.tableowner = current_user)"
            " FROM pg_roles r WHERE r.rolname = current_user"
        )
        superuser, bypass, role, owner = cursor.fetchone()
    errors = []
    if missing := sorted(tables - guarded):
        errors.append(f"no row-level security on {', '.join(missing)}: run `manage.py migrate`")
    warnings = []
    if superuser or bypass or owner:
        why = "a superuser" if superuser else "BYPASSRLS" if bypass else "the tables' owner"
        warnings.append(
            f"the application connects as {role} ({why}), which row-level security does not"
            ' bind: give it a role of its own (README, "Two database roles")'
        )
    return errors, warnings
