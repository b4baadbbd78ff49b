"""Django's PostgreSQL backend, plus one thing: before a cursor is handed out, the session's
`schoolhouse.*` settings are made to match what the current request, task or command acts for
(students.row_security), in one statement and only when they differ from what this
connection was last given.

Like Django's own `SET TIME ZONE` on a new connection, the statement goes straight to the
driver: it is the connection's state, not a query of the page's, and the pages' query budgets
do not count it. A rollback may undo a `set_config`, so after one the state is unknown and
the next cursor sets it again.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

from students.row_security import SET_ACTING_SQL, acting_value


class DatabaseWrapper(base.DatabaseWrapper):
    acting_applied: tuple[str, str, str] | None = None

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        # A new connection, or one from the pool that served another request: unknown.
        self.acting_applied = None
        return super().get_new_connection(conn_params)

    def _cursor(self, name: str | None = None) -> Any:
        cursor = super()._cursor(name)  # type: ignore[misc]
        values = acting_value()
        # In a failed transaction the statement would fail too (and a rollback to a
        # savepoint asks for a cursor there): the rollback resets what we know.
        if (
            values != self.acting_applied
            and not self.needs_rollback
            and self.connection.info.transaction_status != TransactionStatus.INERROR
        ):
            with self.wrap_database_errors:
                self.connection.execute(SET_ACTING_SQL, list(values))
            self.acting_applied = values
        return cursor

    def _rollback(self) -> None:
        super()._rollback()  # type: ignore[misc]
        self.acting_applied = None

    def _savepoint_rollback(self, sid: str) -> None:
        super()._savepoint_rollback(sid)  # type: ignore[misc]
        self.acting_applied = None
