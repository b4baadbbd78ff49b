"""`python -m bench rls`: what row-level security costs, measured side by side in one run.

1. Dataset: the load benchmark's `schoolhouse_load` (seeded once, reused), migrated as the
   tables' owner with the application's role named, so the post_migrate hook writes every
   policy and grants `schoolhouse_app` what it needs.
2. Two gunicorns (production settings, docker/gunicorn.conf.py), one Redis:
   - "rls-on": DATABASE_URL as `schoolhouse_app`, which the policies bind, and
     DATABASE_MAINTENANCE_URL as the owner, as a two-role install runs;
   - "rls-off": DATABASE_URL as the owner `schoolhouse`, which row-level security does not
     bind (no FORCE): the policies are there but never evaluated.
   Both run the same backend, so both send the `set_config` of the acting schools (one round
   trip per request that touches the database); its own cost is timed apart (step 5).
3. Checks that the comparison compares two things: the roles of each server's connections in
   pg_stat_activity (by application_name) after every round, and queries as each role (the
   application's sees nothing without a school, one school with one; the owner sees all).
4. Interleaved: staff scenario rounds on, off, off, on (drift cancels to first order), the
   cache flushed before each; then saturation steps, both servers at each step, alternating
   which goes first.
5. The `set_config` round trip against `SELECT 1`, on one connection, timed in a loop.
6. Results under bench/results/rls-<stamp>/ and in BENCHMARKS.md's "### Row-level security".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from . import report
from .run import (
    P95_LIMIT_MS,
    ROUTES,
    LocustResult,
    p95_crossing,
    queries_between,
    run_locust,
    saturation_step,
)
from .services import (
    LOAD_DB,
    OWNER,
    PG_HOST,
    PG_PORT,
    REPO,
    RESULTS,
    SCHOOLS,
    STUDENTS_PER_SCHOOL,
    THREADS,
    WORKERS,
    Gunicorn,
    Redis,
    app_env,
    dataset_ensure,
    machine,
    manage,
    prepare_accounts,
    psql,
    say,
)

APP_ROLE = "schoolhouse_app"  # scripts/ensure_services.sh makes it; password = its name
ROLE_OF = {"rls-on": APP_ROLE, "rls-off": OWNER}


def role_url(role: str, application_name: str = "") -> str:
    url = f"postgres://{role}:{role}@{PG_HOST}:{PG_PORT}/{LOAD_DB}"
    return f"{url}?application_name={application_name}" if application_name else url


def psql_as(role: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", role, "-d", LOAD_DB]
        + ["-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": role},
    )
    return result.stdout.strip()


def roles_check() -> dict[str, Any]:
    """What each role sees with no school, and with one: the application's role must see
    nothing and then one school; the owner every row either way. Raises if not."""
    school = psql("SELECT min(id) FROM students_school", db=LOAD_DB)
    count = "SELECT count(*) FROM students_student"
    with_school = f"SELECT set_config('schoolhouse.schools', '{{{school}}}', false); {count}"
    seen = {
        role: {
            "no school": int(psql_as(role, count)),
            "one school": int(psql_as(role, with_school).splitlines()[-1]),
        }
        for role in (APP_ROLE, OWNER)
    }
    flags = psql(
        f"SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = '{APP_ROLE}'", db=LOAD_DB
    )
    table = psql(
        "SELECT tableowner, rowsecurity, (SELECT relforcerowsecurity FROM pg_class"
        " WHERE relname = 'students_student') FROM pg_tables WHERE tablename = 'students_student'",
        db=LOAD_DB,
    )
    policies = int(psql("SELECT count(*) FROM pg_policy", db=LOAD_DB))
    everyone = SCHOOLS * STUDENTS_PER_SCHOOL
    ok = (
        seen[APP_ROLE]["no school"] == 0
        and 0 < seen[APP_ROLE]["one school"] < everyone
        and seen[OWNER]["no school"] >= everyone
        and seen[OWNER]["one school"] >= everyone
        and flags == "f|f"
        and table == f"{OWNER}|t|f"
        and policies > 0
    )
    result = {
        "students seen": seen,
        f"{APP_ROLE} superuser|bypassrls": flags,
        "students_student owner|rls|force": table,
        "policies": policies,
    }
    if not ok:
        raise SystemExit(f"row-level security is not as the comparison needs: {result}")
    return result


def connection_roles() -> dict[str, dict[str, int]]:
    """{server: {role: open connections}} from pg_stat_activity, by application_name."""
    rows = psql(
        "SELECT application_name, usename, count(*) FROM pg_stat_activity"
        f" WHERE datname = '{LOAD_DB}' AND application_name LIKE 'bench-rls-%'"
        " GROUP BY 1, 2",
        db=LOAD_DB,
    )
    out: dict[str, dict[str, int]] = {}
    for line in rows.splitlines():
        name, role, n = line.split("|")
        out.setdefault(name.removeprefix("bench-"), {})[role] = int(n)
    return out


def connections_check(when: str, loaded: str) -> dict[str, dict[str, int]]:
    """Each server's connections are its role's only, and the server just loaded has some
    (an idle one may have none yet: its pool opens on the first request). Raises if not."""
    seen = connection_roles()
    for server, role in ROLE_OF.items():
        roles = set(seen.get(server, {}))
        if roles - {role} or (server == loaded and not roles):
            raise SystemExit(f"{when}: {server} should connect as {role} only, seen {seen}")
    return seen


def db_counters() -> dict[str, float]:
    """The dataset database's transaction and row counters (pg_stat_database)."""
    time.sleep(1.5)  # backends report their counters about once a second once idle
    row = psql(
        "SELECT pg_stat_clear_snapshot(); SELECT xact_commit + xact_rollback, tup_returned,"
        f" tup_fetched, blks_hit + blks_read FROM pg_stat_database WHERE datname = '{LOAD_DB}'",
        db=LOAD_DB,
    ).splitlines()[-1]
    keys = ("transactions", "rows returned", "rows fetched", "blocks")
    return dict(zip(keys, (float(x) for x in row.split("|")), strict=True))


def responses(result: LocustResult) -> int:
    """Every response of a locust run, ramp-up and warm-up included."""
    if result.samples is None or not result.samples.exists():
        return 0
    return sum(1 for line in result.samples.read_text().splitlines() if line[:3] in {"ok,", "err"})


def flush_cache(redis: Redis) -> None:
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "flushall"],
        check=True,
        capture_output=True,
    )


def others_running() -> list[str]:
    """The busiest processes at the start that are not this benchmark's."""
    out = subprocess.run(
        ["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()[1:]
    busy = []
    for line in out:
        cpu, _etime, command = line.split(None, 2)
        if float(cpu) >= 1.0 and "bench rls" not in command and not command.startswith("ps "):
            busy.append(f"{cpu} % CPU: {command[:120]}")
    return busy[:6]


def set_config_timing(loops: int = 3000) -> dict[str, float]:
    """Median microseconds of the backend's `set_config` statement and of `SELECT 1`, each
    a round trip over loopback on one connection as the application's role; alternated in
    blocks so both see the same machine."""
    import psycopg

    from students.row_security import SET_ACTING_SQL

    school = psql("SELECT min(id) FROM students_school", db=LOAD_DB)
    times: dict[str, list[float]] = {"set_config": [], "SELECT 1": []}
    # Client-side binding and nothing prepared, as Django's backend sends statements.
    with psycopg.connect(
        role_url(APP_ROLE), autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        conn.prepare_threshold = None
        for n in range(loops):
            values = [f"{{{school}}}" if n % 2 else "", str(n), ""]
            started = time.perf_counter()
            conn.execute(SET_ACTING_SQL, values)
            times["set_config"].append(time.perf_counter() - started)
            started = time.perf_counter()
            conn.execute("SELECT 1")
            times["SELECT 1"].append(time.perf_counter() - started)
    return {k: round(statistics.median(v) * 1e6, 1) for k, v in times.items()}


# ---------------------------------------------------------------------------------------------
def scenario_round(
    server: Gunicorn, redis: Redis, args: argparse.Namespace, plan: Path, out: Path, n: int
) -> dict[str, Any]:
    flush_cache(redis)  # every round starts as cold as the other server's did
    metrics_before, db_before = server.metrics(), db_counters()
    cpu_before = server_cpu(server)
    load = os.getloadavg()[0]
    result = run_locust(
        host=server.url,
        plan=plan,
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=f"{int(args.duration + args.users / args.spawn_rate + args.warmup + 5)}s",
        csv_prefix=out / f"scenario-{n}-{server.name}",
        warmup=args.warmup,
    )
    cpu = cpu_since(server, cpu_before)
    db_after = db_counters()
    per_route = queries_between(metrics_before, server.metrics())
    total = result.total
    requests = max(total["requests"], 1)
    # Django's counter per route, weighted by the requests of the measured window.
    weighted = sum(
        per_route.get(ROUTES.get(r["name"], ""), 0.0) * r["requests"]
        for r in result.rows
        if r["name"] != "Aggregated"
    )
    window = result.window()
    # The database counters cover the whole round, ramp-up and warm-up included: so do the
    # responses they are divided by.
    all_requests = max(responses(result), 1)
    row = {
        "round": n,
        "server": server.name,
        "rps": round(total["rps"], 1),
        "p50": total["p50"],
        "p95": total["p95"],
        "p99": total["p99"],
        "requests": total["requests"],
        "failures": total["failures"],
        "from_ramp_p95": window.get("p95"),
        "django_queries_per_request": round(weighted / requests, 2),
        "db_per_request": {
            k: round((db_after[k] - db_before[k]) / all_requests, 2) for k in db_after
        },
        "load_at_start": round(load, 2),
        # CPU of the whole round (ramp-up and warm-up included), per response of the round.
        "cpu_ms_per_request": round(1000 * cpu / all_requests, 2),
        "per_route_p95": {r["name"]: r["p95"] for r in result.rows},
        "per_route_queries": {k: round(v, 2) for k, v in per_route.items()},
        "connections": connections_check(f"after scenario round {n}", server.name),
    }
    say(
        f"  round {n} {server.name}: {row['rps']} req/s, p95 {row['p95']} ms, "
        f"{row['failures']} errors, {row['cpu_ms_per_request']} ms CPU/req, "
        f"{row['django_queries_per_request']} queries/req "
        f"(Django), {row['db_per_request']['transactions']} transactions/req (PostgreSQL)"
    )
    return row


def server_cpu(server: Gunicorn) -> dict[int, float]:
    """CPU seconds used so far by each of the server's gunicorn processes and of the
    PostgreSQL backends serving it (by application_name), by pid."""
    import psutil

    procs: list[psutil.Process] = []
    if server.proc is not None:
        root = psutil.Process(server.proc.pid)
        procs += [root, *root.children(recursive=True)]
    pids = psql(
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
        f"WHERE application_name LIKE 'bench-{server.name}%'",
        db=LOAD_DB,
    ).strip()
    procs += [psutil.Process(int(pid)) for pid in filter(None, pids.split(","))]
    seen: dict[int, float] = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        seen[proc.pid] = t.user + t.system
    return seen


def cpu_since(server: Gunicorn, before: dict[int, float]) -> float:
    """CPU seconds the server used since `before`: each process's growth, a process that
    started since (a recycled gunicorn worker, a new pooled connection) counted whole. A
    process that exited since takes its last seconds with it (both servers alike); counting
    its start value against a newcomer, as plain totals would, could even go negative."""
    after = server_cpu(server)
    return sum(now - before.get(pid, 0.0) for pid, now in after.items())


def saturation_interleaved(
    servers: list[Gunicorn],
    plan: Path,
    out: Path,
    steps: list[int],
    step_seconds: int,
    passes: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """Every step on both servers, alternating which goes first from step to step and from
    pass to pass; a pass stops once both servers are past the p95 limit."""
    rows: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
    for n in range(passes):
        for i, users in enumerate(steps):
            for server in servers if (i + n) % 2 == 0 else servers[::-1]:
                prefix = out / f"saturation-p{n + 1}-{users:03d}-{server.name}"
                cpu_before = server_cpu(server)
                total = {
                    **saturation_step(server, plan, prefix, users, step_seconds),
                    "pass": n + 1,
                }
                cpu = cpu_since(server, cpu_before)
                served = total["rps"] * step_seconds
                total["cpu_ms"] = round(1000 * cpu / served, 2) if served else None
                rows[server.name].append(total)
                say(
                    f"  pass {n + 1}, {users} users {server.name}: {total['rps']:.1f} req/s, "
                    f"p95 {total['p95']} ms, {total['cpu_ms']} ms CPU/req, "
                    f"{total['failures']} errors"
                )
            if all((r[-1]["p95"] or 0) > P95_LIMIT_MS for r in rows.values()):
                break  # both crossed
    for server in servers:
        connections_check("after saturation", server.name)
    return rows


def saturation_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row a step: req/s and p95 averaged over the passes that reached it."""
    by_users: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_users.setdefault(row["users"], []).append(row)
    return [
        {
            "users": users,
            "rps": round(statistics.mean(r["rps"] for r in group), 1),
            "p95": round(statistics.mean(r["p95"] or 0 for r in group), 1),
            "each_rps": [r["rps"] for r in group],
            "cpu_ms": round(statistics.mean(r.get("cpu_ms") or 0 for r in group), 2),
        }
        for users, group in sorted(by_users.items())
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rls", description=__doc__)
    parser.add_argument("--users", type=int, default=500, help="simulated staff (500)")
    parser.add_argument("--spawn-rate", type=float, default=20)
    parser.add_argument(
        "--duration", type=int, default=120, help="measured seconds of a round (120)"
    )
    parser.add_argument("--warmup", type=float, default=30, help="seconds after ramp-up (30)")
    parser.add_argument(
        "--pairs", type=int, default=1, help="on,off,off,on blocks of scenario rounds (1)"
    )
    parser.add_argument("--saturation-steps", default="1,2,4,8,16,32")
    parser.add_argument("--step-seconds", type=int, default=20)
    parser.add_argument(
        "--saturation-passes",
        type=int,
        default=1,
        help="times the saturation steps are run; each step's figures are their means (1)",
    )
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"rls-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    others = others_running()
    # BENCH_COMMIT: a checkout made with `git archive` (away from others' edits) has no .git.
    commit = (
        os.environ.get("BENCH_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    )
    say(f"machine: {host['cores']} cores ({host['cpu']}), load {host['load']}; commit {commit}")
    for line in others:
        say(f"  also running: {line}")
    redis = Redis().start()
    servers: list[Gunicorn] = []
    try:
        owner_env = app_env(redis.port)
        owner_env.pop("DATABASE_MAINTENANCE_URL", None)
        dataset_ensure(owner_env, reseed=False)
        app_env_ = {
            **owner_env,
            "DATABASE_URL": role_url(APP_ROLE),
            "DATABASE_MAINTENANCE_URL": role_url(OWNER),
        }
        say(f"migrate as {OWNER}, granting {APP_ROLE} (the post_migrate hook)")
        manage(app_env_, "migrate", "-v", "0")
        checks = roles_check()
        say(f"roles: {checks}")
        plan = out / "plan.json"
        prepare_accounts(owner_env, args.users, plan)
        on = Gunicorn(
            "rls-on", {**app_env_, "DATABASE_URL": role_url(APP_ROLE, "bench-rls-on")}
        ).start()
        servers.append(on)
        off = Gunicorn(
            "rls-off", {**owner_env, "DATABASE_URL": role_url(OWNER, "bench-rls-off")}
        ).start()
        servers.append(off)
        say(f"gunicorn: {on.url} (rls-on), {off.url} (rls-off), {WORKERS} x {THREADS} each")

        # A fresh server's first minute (imports, template loading, each worker's first
        # connections) is not what is compared: both get the same short run first.
        say("priming both servers (not measured)")
        for server in (on, off):
            run_locust(
                host=server.url,
                plan=plan,
                users=8,
                spawn_rate=8,
                duration="20s",
                csv_prefix=out / f"priming-{server.name}",
                think=(0.0, 0.0),
            )
        order = [on, off, off, on] * args.pairs
        say(
            f"scenario: {args.users} users, {args.duration} s measured after the ramp-up and "
            f"{args.warmup:.0f} s of warm-up; rounds {', '.join(s.name for s in order)}"
        )
        rounds = [
            scenario_round(server, redis, args, plan, out, n)
            for n, server in enumerate(order, start=1)
        ]
        steps = [int(s) for s in args.saturation_steps.split(",") if s.strip()]
        say(f"saturation: steps {steps}, {args.step_seconds} s each, alternating")
        sat = saturation_interleaved(
            [on, off], plan, out, steps, args.step_seconds, args.saturation_passes
        )
        sat_means = {name: saturation_means(rows) for name, rows in sat.items()}
        say("set_config round trip")
        timing = set_config_timing()
        say(f"  {timing}")
        summary = {
            "started": started.isoformat(timespec="seconds"),
            "commit": commit,
            "machine": host,
            "others": others,
            "load_at_end": f"{os.getloadavg()[0]:.2f}",
            "gunicorn": {"workers": WORKERS, "threads": THREADS},
            "args": vars(args),
            "checks": checks,
            "rounds": rounds,
            "saturation": sat,
            "saturation_means": sat_means,
            "saturation_rps": {name: p95_crossing(rows) for name, rows in sat_means.items()},
            "peak_rps": {name: max(r["rps"] for r in rows) for name, rows in sat_means.items()},
            "cpu_ms": {
                name: round(statistics.mean(r["cpu_ms"] for r in rows), 2)
                for name, rows in sat_means.items()
            },
            "set_config_us": timing,
            "results_dir": str(out.relative_to(REPO)),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        markdown = rls_markdown(summary)
        (out / "summary.md").write_text(markdown)
        if not args.no_write:
            report.block_update(RLS_MARK, RLS_HEADING, markdown)
        print("\n" + markdown, flush=True)
        return 0
    finally:
        for server in servers:
            server.stop()
        redis.stop()


RLS_MARK = "<!-- rls -->"
RLS_HEADING = "### Row-level security"


def _ratio(on: float | None, off: float | None) -> str:
    return "-" if not on or not off else f"{on / off:.3f}"


def rls_markdown(s: dict[str, Any]) -> str:
    m, a = s["machine"], s["args"]
    by_server: dict[str, list[dict[str, Any]]] = {"rls-on": [], "rls-off": []}
    for r in s["rounds"]:
        by_server[r["server"]].append(r)

    def mean(name: str, key: str) -> float:
        return statistics.mean(r[key] for r in by_server[name] if r[key] is not None)

    def db_mean(name: str, key: str) -> float:
        return statistics.mean(r["db_per_request"][key] for r in by_server[name])

    lines = [
        f"Run of {s['started']} at commit `{s['commit']}`: `python -m bench rls "
        f"--users {a['users']} --duration {a['duration']} --warmup {a['warmup']:.0f} "
        f"--pairs {a['pairs']} --saturation-steps {a['saturation_steps']} "
        f"--step-seconds {a['step_seconds']} "
        f"--saturation-passes {a.get('saturation_passes', 1)}` "
        f"(raw CSVs in `{s['results_dir']}/`). "
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, load average "
        f"{m['load']} (1/5/15 min) at start, {s['load_at_end']} at the end. Gunicorn "
        f"{s['gunicorn']['workers']} workers x {s['gunicorn']['threads']} thread for each "
        "server (only one is loaded at a time).",
        "",
        "Busiest other processes at the start: "
        + ("; ".join(f"`{o}`" for o in s["others"]) or "none above 1 % CPU")
        + ".",
        "",
        f"Checks: {s['checks']}; every round, pg_stat_activity showed the rls-on server's "
        f"connections as `{APP_ROLE}` only and the rls-off server's as `{OWNER}` only.",
        "",
        f"**Staff scenario**, {a['users']} users, 2-10 s think time, {a['duration']} s "
        f"measured after the ramp-up and {a['warmup']:.0f} s of warm-up, Redis flushed "
        "before each round:",
        "",
        "| round | server | req/s | p50 ms | p95 ms | p99 ms | p95 from ramp-up's end | "
        "errors | CPU ms/req | Django queries/req | PG transactions/req | PG rows returned/req | "
        "load (1 min) at start |",
        "| ---: | --- |" + " ---: |" * 11,
    ]
    for r in s["rounds"]:
        lines.append(
            f"| {r['round']} | {r['server']} | {r['rps']} | {r['p50']} | {r['p95']} "
            f"| {r['p99']} | {r['from_ramp_p95']} | {r['failures']} "
            f"| {r.get('cpu_ms_per_request', '-')} "
            f"| {r['django_queries_per_request']} | {r['db_per_request']['transactions']} "
            f"| {r['db_per_request']['rows returned']} | {r['load_at_start']} |"
        )
    on_p95, off_p95 = mean("rls-on", "p95"), mean("rls-off", "p95")
    on_rps, off_rps = mean("rls-on", "rps"), mean("rls-off", "rps")
    on_sat, off_sat = s["saturation_rps"]["rls-on"], s["saturation_rps"]["rls-off"]
    on_cpu = mean("rls-on", "cpu_ms_per_request")
    off_cpu = mean("rls-off", "cpu_ms_per_request")
    lines += [
        "",
        "| | rls-on | rls-off | on / off |",
        "| --- | ---: | ---: | ---: |",
        f"| scenario p95 ms (mean of rounds) | {on_p95:.0f} | {off_p95:.0f} "
        f"| {_ratio(on_p95, off_p95)} |",
        f"| scenario req/s (mean of rounds) | {on_rps:.1f} | {off_rps:.1f} "
        f"| {_ratio(on_rps, off_rps)} |",
        f"| scenario CPU ms/req (gunicorn + its backends, mean of rounds) "
        f"| {on_cpu:.2f} | {off_cpu:.2f} "
        f"| {_ratio(on_cpu, off_cpu)} |",
        f"| saturation req/s (p95 crosses 500 ms) | {on_sat} | {off_sat} "
        f"| {_ratio(on_sat, off_sat)} |",
        f"| peak req/s (best saturation step) | {s['peak_rps']['rls-on']} "
        f"| {s['peak_rps']['rls-off']} "
        f"| {_ratio(s['peak_rps']['rls-on'], s['peak_rps']['rls-off'])} |",
        f"| CPU ms per request (gunicorn + its PostgreSQL backends, saturation steps) "
        f"| {s['cpu_ms']['rls-on']} | {s['cpu_ms']['rls-off']} "
        f"| {_ratio(s['cpu_ms']['rls-on'], s['cpu_ms']['rls-off'])} |",
        f"| Django queries/req | {mean('rls-on', 'django_queries_per_request'):.2f} "
        f"| {mean('rls-off', 'django_queries_per_request'):.2f} | |",
        f"| PostgreSQL transactions/req | {db_mean('rls-on', 'transactions'):.2f} "
        f"| {db_mean('rls-off', 'transactions'):.2f} | |",
        f"| PostgreSQL rows returned/req | {db_mean('rls-on', 'rows returned'):.1f} "
        f"| {db_mean('rls-off', 'rows returned'):.1f} | |",
        "",
        f"**Saturation** (no think time, {a['step_seconds']} s a step, both servers at each "
        "step, alternating which goes first; means of the passes, each pass's req/s in "
        "brackets):",
        "",
        "| users | rls-on req/s | rls-on p95 ms | rls-on CPU ms/req | rls-off req/s "
        "| rls-off p95 ms | rls-off CPU ms/req | req/s on / off |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    means = s["saturation_means"]
    for r_on, r_off in zip(means["rls-on"], means["rls-off"], strict=False):
        lines.append(
            f"| {r_on['users']} | {r_on['rps']} {r_on['each_rps']} | {r_on['p95']} "
            f"| {r_on['cpu_ms']} | {r_off['rps']} {r_off['each_rps']} | {r_off['p95']} "
            f"| {r_off['cpu_ms']} "
            f"| {_ratio(r_on['rps'], r_off['rps'])} |"
        )
    t = s["set_config_us"]
    lines += [
        "",
        f"**The `set_config` round trip** (one connection as `{APP_ROLE}`, median of 3,000): "
        f"{t['set_config']} µs, against {t['SELECT 1']} µs for `SELECT 1`.",
    ]
    return "\n".join(lines) + "\n"
