"""Where row-level security spends its time: each SELECT of the scenario's pages planned and
run as the tables' owner and as the application's role, side by side.

    python -m bench.load.rls_explain PLAN.json [--repeat 7]

PLAN.json is a `bench rls` run's plan (sessions of real staff). Each page is requested once
in-process with the cache off (every query runs) and its queries captured; each SELECT is
then run with EXPLAIN ANALYZE on two connections, one as `schoolhouse` and one as
`schoolhouse_app` acting for the page's school and user, alternating, `--repeat` times.
Medians of planning and execution time per page, and the queries whose plan differs.

Then the policy function's own cost (`--function-loops`): two small queries timed as the
owner, as the application's role, and as it with the function in PL/pgSQL or with no
function (each variant created inside a transaction that is rolled back).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .services import PG_HOST, PG_PORT, REPO, app_env

APP_ROLE, OWNER = "schoolhouse_app", "schoolhouse"


def pages(person: dict[str, Any]) -> dict[str, str]:
    pupil, term = person["students"][0], person["terms"][-1]
    return {
        "dashboard": "/dashboard/",
        "student search": "/students/?q=smith",
        "student profile": f"/students/{pupil}/",
        "attendance (form)": f"/classes/{person['section_id']}/attendance/",
        "grades (form)": f"/assessments/{person['assessments'][0]}/grades/",
        "roster (pdf)": f"/classes/{person['section_id']}/roster.pdf",
        "report card (pdf)": f"/students/{pupil}/report-card/{term}/",
    }


def capture(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{who, page, school, user, queries: [sql]}] for a teacher and a registrar."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    out = []
    for role in ("teacher", "registrar"):
        person = next(p for p in plan if p["role"] == role and p["students"])
        client = Client(HTTP_HOST="127.0.0.1")
        client.cookies["sessionid"] = person["sessionid"]
        client.cookies["csrftoken"] = person["csrftoken"]
        for page, path in pages(person).items():
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(path)
            if response.status_code != 200:
                print(f"{role} {page}: HTTP {response.status_code}", file=sys.stderr)
            out.append(
                {
                    "who": role,
                    "page": page,
                    "school": person["school_id"],
                    "user": person["user_id"],
                    "queries": [
                        q["sql"]
                        for q in ctx.captured_queries
                        if q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))
                    ],
                }
            )
    return out


def _plan_shape(node: dict[str, Any]) -> str:
    """The plan's nodes, leaving out InitPlans: each policy adds one (its school list,
    computed once per statement), which is not a change of plan."""
    kids = ",".join(
        _plan_shape(k) for k in node.get("Plans", []) if k.get("Parent Relationship") != "InitPlan"
    )
    name = node["Node Type"] + (f"[{node['Index Name']}]" if "Index Name" in node else "")
    return f"{name}({kids})" if kids else name


def explain(pages_: list[dict[str, Any]], db: str, repeat: int) -> list[dict[str, Any]]:
    import psycopg

    def connect(role: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=PG_HOST, port=PG_PORT, dbname=db, user=role, password=role, autocommit=True
        )

    rows = []
    with connect(OWNER) as owner, connect(APP_ROLE) as app:
        for page in pages_:
            app.execute(
                "SELECT set_config('schoolhouse.schools', %s, false),"
                " set_config('schoolhouse.user', %s, false)",
                [f"{{{page['school']}}}", str(page["user"])],
            )
            totals: dict[str, list[float]] = {}
            differs = []
            for sql in page["queries"]:
                times: dict[str, list[tuple[float, float]]] = {OWNER: [], APP_ROLE: []}
                shapes = {}
                for _ in range(repeat):
                    for role, conn in ((OWNER, owner), (APP_ROLE, app)):
                        # A query that fails here (a savepoint's, a lock) is left out.
                        try:
                            result = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
                        except psycopg.Error:
                            break
                        doc = result.fetchone()[0][0]
                        times[role].append((doc["Planning Time"], doc["Execution Time"]))
                        shapes[role] = _plan_shape(doc["Plan"])
                if not times[OWNER] or not times[APP_ROLE]:
                    continue
                for role in (OWNER, APP_ROLE):
                    plan_ms = statistics.median(t[0] for t in times[role])
                    exec_ms = statistics.median(t[1] for t in times[role])
                    totals.setdefault(f"{role} plan", []).append(plan_ms)
                    totals.setdefault(f"{role} exec", []).append(exec_ms)
                if shapes[OWNER] != shapes[APP_ROLE]:
                    differs.append(
                        {
                            "sql": sql[:300],
                            OWNER: shapes[OWNER],
                            APP_ROLE: shapes[APP_ROLE],
                            "ms": {
                                r: round(statistics.median(sum(t) for t in times[r]), 3)
                                for r in times
                            },
                        }
                    )
            rows.append(
                {
                    "who": page["who"],
                    "page": page["page"],
                    "selects": len(page["queries"]),
                    **{k: round(sum(v), 3) for k, v in totals.items()},
                    "plans differ": differs,
                }
            )
    return rows


PLPGSQL_FUNCTION = """
CREATE OR REPLACE FUNCTION schoolhouse_acting_schools() RETURNS bigint[]
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE acting text := coalesce(current_setting('schoolhouse.schools', true), '');
BEGIN
    IF acting = '' THEN RETURN '{}'::bigint[];
    ELSIF acting = '*' THEN RETURN ARRAY(SELECT id FROM students_school);
    END IF;
    RETURN acting::bigint[];
END $$
"""
# The same test written into the policies of the three tables the queries read, without a
# function call: the planner plans the InitPlan with the query.
_ACTING = (
    "(SELECT CASE WHEN coalesce(current_setting('schoolhouse.schools', true), '') IN ('', '*')"
    " THEN '{}'::bigint[] ELSE current_setting('schoolhouse.schools', true)::bigint[] END)"
)
INLINE_POLICIES = [
    f"DROP POLICY schoolhouse_school_wall ON {table}; CREATE POLICY schoolhouse_school_wall ON "
    f"{table} USING (current_setting('schoolhouse.schools', true) = '*'"
    f" OR school_id = ANY ({_ACTING}::bigint[]))"
    for table in ("students_student", "students_enrollment", "students_section")
]
FUNCTION_QUERIES = {
    "one table": "SELECT id, first_name FROM students_student WHERE school_id = %s AND id = %s",
    "three tables": (
        "SELECT s.id, c.name FROM students_student s"
        " JOIN students_enrollment e ON e.student_id = s.id AND e.ended_on IS NULL"
        " JOIN students_section c ON c.id = e.section_id"
        " WHERE s.school_id = %s AND s.id = %s"
    ),
}


def function_cost(db: str, plan: list[dict[str, Any]], loops: int) -> dict[str, Any]:
    """Median round trip (µs) of two small queries as the owner, as the application's role
    with the policies' SQL function, and as the application's role with the same function
    in PL/pgSQL: one superuser session, SET LOCAL ROLE, the PL/pgSQL version created inside
    a transaction that is rolled back. Client-side binding, as Django's backend sends them
    (nothing prepared: every statement is planned)."""
    import psycopg

    person = next(p for p in plan if p["students"])
    school, pupil = person["school_id"], person["students"][0]
    out: dict[str, Any] = {}
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, dbname=db, user="postgres", cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.prepare_threshold = None
        for variant in (
            "owner",
            "app, SQL function",
            "app, PL/pgSQL function",
            "app, policy without a function",
        ):
            with conn.transaction(force_rollback=True):
                if variant.endswith("PL/pgSQL function"):
                    conn.execute(PLPGSQL_FUNCTION)
                if variant.endswith("without a function"):
                    for sql in INLINE_POLICIES:
                        conn.execute(sql)
                role = OWNER if variant == "owner" else APP_ROLE
                conn.execute(f"SET LOCAL ROLE {role}")
                conn.execute(
                    "SELECT set_config('schoolhouse.schools', %s, true)", [f"{{{school}}}"]
                )
                for name, sql in FUNCTION_QUERIES.items():
                    times = []
                    for _ in range(loops):
                        started = time.perf_counter()
                        conn.execute(sql, [school, pupil]).fetchall()
                        times.append(time.perf_counter() - started)
                    out[f"{name}: {variant}"] = round(statistics.median(times) * 1e6, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load.rls_explain")
    parser.add_argument("plan", type=Path)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--function-loops",
        type=int,
        default=2000,
        help="round trips of each small query for the policy function's cost (0: skip)",
    )
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    # No cache: every query of the page runs. Nothing here sends a task (port 1: nothing).
    env = app_env(1, CACHE_BACKEND="dummy")
    os.environ.update(env)
    os.chdir(REPO)
    captured = capture(plan)
    db = env["DATABASE_URL"].rsplit("/", 1)[1]
    rows = explain(captured, db, args.repeat)
    functions = function_cost(db, plan, args.function_loops) if args.function_loops else {}
    text = json.dumps({"pages": rows, "function": functions}, indent=2)
    if args.out:
        args.out.write_text(text)
    for r in rows:
        print(
            f"{r['who']:9} {r['page']:18} {r['selects']:3} selects: owner "
            f"{r.get(f'{OWNER} plan', 0):.2f} + {r.get(f'{OWNER} exec', 0):.2f} ms, app "
            f"{r.get(f'{APP_ROLE} plan', 0):.2f} + {r.get(f'{APP_ROLE} exec', 0):.2f} ms "
            f"(plan + run); {len(r['plans differ'])} plans differ"
        )
    for name, us in functions.items():
        print(f"{name}: {us} µs")


if __name__ == "__main__":
    main()
