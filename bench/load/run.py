"""`python -m bench load`: the load benchmark of issue 9, one command, well under 15 minutes
when the dataset is reused.

1. Dataset: `schoolhouse_load` on the shared PostgreSQL, seeded once with `seed_demo`
   (10 schools x 2,000 students, attendance and grades for the school year so far), then
   reused; migrate and collectstatic every run.
2. Services: a throwaway redis-server on a free port; gunicorn (docker/gunicorn.conf.py,
   production settings) with the cache, and a second one with CACHE_BACKEND=dummy.
3. Cache on/off: the same sequence of dashboard, report card and roster requests sent to
   both servers in turn over keep-alive connections, nothing else running; median times
   and queries per request.
4. Staff scenario: locust headless, N users (default 500) with 2-10 s think time; per route
   p50/p95/p99, requests/s, errors; DB queries per request from the app's /metrics.
5. Saturation: the same scenario without think time, stepping users up; the requests/s at
   which p95 crosses 500 ms.
6. Results: CSVs and summary under bench/results/load-<stamp>/, the "## Load" section of
   BENCHMARKS.md rewritten, the table printed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import http.client
import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import report
from .services import (
    BIN,
    REPO,
    RESULTS,
    THREADS,
    WORKERS,
    Gunicorn,
    Redis,
    app_env,
    dataset_ensure,
    machine,
    prepare_accounts,
    say,
)

LOCUSTFILE = REPO / "bench" / "load" / "locustfile.py"
QUERIES_RE = re.compile(
    r'^schoolhouse_http_request_db_queries_(sum|count)\{route="([^"]+)"\} ([0-9.e+]+)$', re.M
)
P95_LIMIT_MS = 500.0


def route_queries(metrics_text: str) -> dict[str, tuple[float, float]]:
    """{route: (queries sum, request count)} from a Prometheus exposition."""
    out: dict[str, list[float]] = {}
    for kind, route, value in QUERIES_RE.findall(metrics_text):
        out.setdefault(route, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def queries_between(before: str, after: str) -> dict[str, float]:
    """Mean DB queries per request of each route between two /metrics scrapes."""
    a, b = route_queries(before), route_queries(after)
    result = {}
    for route, (q, n) in b.items():
        q0, n0 = a.get(route, (0.0, 0.0))
        if n - n0 > 0:
            result[route] = (q - q0) / (n - n0)
    return result


@dataclass
class LocustResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # per name, plus "Aggregated"
    samples: Path | None = None  # every response: "ok|error,end time,ms"; "spawned,time,"

    @property
    def total(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["name"] == "Aggregated")

    def window(self, *, after_spawn: float = 0.0) -> dict[str, Any]:
        """Requests, errors, requests/s and p95 of the responses that ended from
        `after_spawn` seconds after the last user started to the end of the run."""
        if self.samples is None or not self.samples.exists():
            return {}
        spawned, rows = None, []
        for line in self.samples.read_text().splitlines():
            kind, at, ms = line.split(",")
            if kind == "spawned":
                spawned = float(at)
            else:
                rows.append((float(at), float(ms), kind == "error"))
        if spawned is None:
            return {}
        kept = sorted(ms for at, ms, _error in rows if at >= spawned + after_spawn)
        if not kept:
            return {}
        last = max(at for at, _ms, _error in rows)
        return {
            "requests": len(kept),
            "errors": sum(1 for at, _ms, error in rows if error and at >= spawned + after_spawn),
            "rps": round(len(kept) / max(last - spawned - after_spawn, 1.0), 1),
            "p50": kept[len(kept) // 2],
            "p95": kept[min(len(kept) - 1, int(len(kept) * 0.95))],
        }


def run_locust(
    *,
    host: str,
    plan: Path,
    users: int,
    spawn_rate: float,
    duration: str,
    csv_prefix: Path,
    think: tuple[float, float] = (2.0, 10.0),
    warmup: float = 0.0,
) -> LocustResult:
    env = {
        **os.environ,
        "BENCH_PLAN": str(plan),
        "BENCH_THINK_MIN": str(think[0]),
        "BENCH_THINK_MAX": str(think[1]),
        "BENCH_WARMUP": str(warmup),
        "BENCH_SAMPLES": f"{csv_prefix}_samples.csv",
    }
    cmd = [
        str(BIN / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        duration,
        "--csv",
        str(csv_prefix),
        "--reset-stats",  # the ramp-up is not measured
        "--only-summary",
        "--stop-timeout",
        "15",
        "--loglevel",
        "WARNING",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (csv_prefix.parent / f"{csv_prefix.name}.log").write_text(proc.stdout + proc.stderr)
    return LocustResult(
        rows=read_stats(Path(f"{csv_prefix}_stats.csv")),
        samples=Path(f"{csv_prefix}_samples.csv"),
    )


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def read_stats(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            rows.append(
                {
                    "name": row["Name"],
                    "method": row["Type"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "rps": _num(row["Requests/s"]) or 0.0,
                    "p50": _num(row["50%"]),
                    "p95": _num(row["95%"]),
                    "p99": _num(row["99%"]),
                }
            )
    return rows


# Locust names of the scenario's requests -> Django route names in /metrics.
ROUTES = {
    "dashboard": "students:dashboard",
    "student search": "students:student_list",
    "student profile": "students:student_detail",
    "report card (pdf)": "students:report_card",
    "roster (pdf)": "students:roster_export",
    "attendance (form)": "students:attendance_take",
    "attendance (submit)": "students:attendance_take",
    "grades (form)": "students:grades_enter",
    "grades (submit)": "students:grades_enter",
    "upload (form)": "files:student_document_upload",
    "upload (submit)": "files:student_document_upload",
    "download (link)": "files:version_download",
    "download (file)": "files:serve",
}


# ---------------------------------------------------------------------------------------------
# Cache on / off, side by side
# ---------------------------------------------------------------------------------------------
class _Browser:
    """One keep-alive connection per server, as a browser holds one: the timings are the
    server's page and the loopback, not a new TCP connection and urllib's set-up per page
    (about 2 ms here, a third of a cached page)."""

    def __init__(self) -> None:
        self.connections: dict[int, http.client.HTTPConnection] = {}

    def get(self, server: Gunicorn, path: str, cookie: str) -> float:
        connection = self.connections.get(server.port)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            self.connections[server.port] = connection
        started = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookie})
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            raise RuntimeError(f"{server.url}{path}: HTTP {response.status}")
        return elapsed

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()


def cache_comparison(
    cached: Gunicorn, uncached: Gunicorn, plan: list[dict[str, Any]], rounds: int
) -> list[dict[str, Any]]:
    """The same requests, in the same order, to the server with the cache and the one
    without; the first (cold) round is left out of the medians."""
    teachers = [p for p in plan if p["role"] == "teacher" and p["students"] and p["terms"]][:5]
    pages = {
        "dashboard": lambda p: "/dashboard/",
        "report card (pdf)": lambda p: (
            f"/students/{p['students'][0]}/report-card/{p['terms'][-1]}/"
        ),
        "roster (pdf)": lambda p: f"/classes/{p['section_id']}/roster.pdf",
    }
    before = {s.name: s.metrics() for s in (cached, uncached)}
    times: dict[tuple[str, str], list[float]] = {}
    browser = _Browser()
    try:
        for n in range(rounds + 1):
            for page, path in pages.items():
                for person in teachers:
                    cookie = f"sessionid={person['sessionid']}; csrftoken={person['csrftoken']}"
                    for server in (cached, uncached):
                        ms = browser.get(server, path(person), cookie)
                        if n:
                            times.setdefault((page, server.name), []).append(ms)
    finally:
        browser.close()
    queries = {s.name: queries_between(before[s.name], s.metrics()) for s in (cached, uncached)}
    rows = []
    for page in pages:
        on = statistics.median(times[(page, cached.name)])
        off = statistics.median(times[(page, uncached.name)])
        route = ROUTES[page]
        rows.append(
            {
                "page": page,
                "cached_ms": round(on, 1),
                "uncached_ms": round(off, 1),
                "speedup": round(off / on, 1) if on else None,
                # Means over all rounds, the cold first round included.
                "cached_queries": round(queries[cached.name].get(route, 0.0), 1),
                "uncached_queries": round(queries[uncached.name].get(route, 0.0), 1),
                "samples": len(times[(page, cached.name)]),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Saturation
# ---------------------------------------------------------------------------------------------
def saturation(
    server: Gunicorn, plan: Path, out: Path, steps: list[int], step_seconds: int
) -> tuple[list[dict[str, Any]], float | None]:
    """Closed-loop steps without think time; returns the steps and the requests/s at which
    p95 crosses P95_LIMIT_MS (linear between the two steps around it), None if never."""
    results = []
    for users in steps:
        say(f"saturation: {users} users, no think time, {step_seconds} s")
        results.append(
            saturation_step(server, plan, out / f"saturation-{users:03d}", users, step_seconds)
        )
        total = results[-1]
        say(f"  {total['rps']:.1f} req/s, p95 {total['p95']} ms, {total['failures']} errors")
        if (total["p95"] or 0) > P95_LIMIT_MS:
            break  # crossed: more users would only lengthen the run
    return results, p95_crossing(results)


def saturation_step(
    server: Gunicorn, plan: Path, csv_prefix: Path, users: int, step_seconds: int
) -> dict[str, Any]:
    """One closed-loop step without think time: its requests/s, p50, p95 and errors, and
    the machine's load when it ended."""
    total = run_locust(
        host=server.url,
        plan=plan,
        users=users,
        spawn_rate=max(users, 1),
        duration=f"{step_seconds}s",
        csv_prefix=csv_prefix,
        think=(0.0, 0.0),
    ).total
    return {
        "users": users,
        "rps": round(total["rps"], 1),
        "p50": total["p50"],
        "p95": total["p95"],
        "failures": total["failures"],
        "load": f"{os.getloadavg()[0]:.2f}",
    }


def p95_crossing(results: list[dict[str, Any]]) -> float | None:
    """The requests/s at which p95 crosses P95_LIMIT_MS, linear between the two steps
    around it; None if it never does."""
    crossing = None
    for low, high in zip(results, results[1:], strict=False):
        if (low["p95"] or 0) <= P95_LIMIT_MS < (high["p95"] or 0):
            span = (high["p95"] - low["p95"]) or 1.0
            crossing = low["rps"] + (high["rps"] - low["rps"]) * (P95_LIMIT_MS - low["p95"]) / span
    if crossing is None and results and (results[0]["p95"] or 0) > P95_LIMIT_MS:
        crossing = results[0]["rps"]
    return round(crossing, 1) if crossing is not None else None


# ---------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__)
    parser.add_argument("--users", type=int, default=500, help="simulated staff (500)")
    parser.add_argument("--spawn-rate", type=float, default=20, help="users started per second")
    parser.add_argument("--duration", default="3m", help="measured part of the run (3m)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=60,
        help="seconds after the ramp-up before the measured part (60); reported apart",
    )
    parser.add_argument("--compare-rounds", type=int, default=10, help="cache on/off rounds")
    parser.add_argument(
        "--saturation-steps",
        default="1,2,4,8,16,32",
        help="users of each no-think-time step (comma-separated; empty: skip)",
    )
    parser.add_argument("--step-seconds", type=int, default=30)
    parser.add_argument("--reseed", action="store_true", help="drop and rebuild the dataset")
    parser.add_argument(
        "--no-write", action="store_true", help="do not rewrite BENCHMARKS.md ## Load"
    )
    args = parser.parse_args(argv)

    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"load-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    say(f"machine: {host['cores']} cores, {host['ram_gb']} GB RAM, load {host['load']}")
    redis = Redis().start()
    servers: list[Gunicorn] = []
    try:
        env = app_env(redis.port)
        dataset_ensure(env, reseed=args.reseed)
        plan_path = out / "plan.json"
        plan = prepare_accounts(env, args.users, plan_path)
        cached = Gunicorn("cached", env).start()
        servers.append(cached)
        uncached = Gunicorn("uncached", {**env, "CACHE_BACKEND": "dummy"}, workers=1).start()
        servers.append(uncached)
        say(f"gunicorn: {cached.url} ({WORKERS} workers x {THREADS} threads), {uncached.url}")

        say("cache on/off, side by side")
        compare = cache_comparison(cached, uncached, plan, args.compare_rounds)
        uncached.stop()  # it must not compete for the cores during the scenario
        for row in compare:
            say(f"  {row['page']}: {row['cached_ms']} ms cached, {row['uncached_ms']} ms not")

        say(
            f"scenario: {args.users} users, think time 2-10 s, {args.duration} after ramp-up "
            f"and {args.warmup:.0f} s of warm-up"
        )
        load_at_start = os.getloadavg()[0]
        before = cached.metrics()
        scenario = run_locust(
            host=cached.url,
            plan=plan_path,
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration=_with_ramp(args.duration, args.users / args.spawn_rate + args.warmup),
            csv_prefix=out / "scenario",
            warmup=args.warmup,
        )
        from_ramp = scenario.window()
        per_route = queries_between(before, cached.metrics())
        for row in scenario.rows:
            route = ROUTES.get(row["name"])
            row["queries"] = round(per_route[route], 1) if route in per_route else None
        say(
            f"  {scenario.total['rps']:.1f} req/s, p95 {scenario.total['p95']} ms, "
            f"{scenario.total['failures']} errors; from the end of the ramp-up: "
            f"p95 {from_ramp.get('p95')} ms, {from_ramp.get('errors')} errors"
        )

        steps = [int(s) for s in args.saturation_steps.split(",") if s.strip()]
        sat_rows, crossing = (
            saturation(cached, plan_path, out, steps, args.step_seconds) if steps else ([], None)
        )
        summary = {
            "started": started.isoformat(timespec="seconds"),
            "machine": host,
            "load_at_scenario_start": round(load_at_start, 2),
            "load_at_end": f"{os.getloadavg()[0]:.2f}",
            "gunicorn": {"workers": WORKERS, "threads": THREADS, "worker_class": "gthread"},
            "users": args.users,
            "duration": args.duration,
            "warmup": args.warmup,
            "from_ramp": from_ramp,
            "scenario": scenario.rows,
            "compare": compare,
            "saturation": sat_rows,
            "saturation_rps": crossing,
            "results_dir": str(out.relative_to(REPO)),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        markdown = report.load_markdown(summary)
        (out / "summary.md").write_text(markdown)
        if not args.no_write:
            report.benchmarks_update(markdown)
        print("\n" + markdown, flush=True)
        return 0
    finally:
        for server in servers:
            server.stop()
        redis.stop()


def _with_ramp(duration: str, ramp_seconds: float) -> str:
    """locust's -t counts the ramp-up too; add it, since --reset-stats drops it."""
    match = re.fullmatch(r"(\d+)([smh])", duration)
    if not match:
        raise SystemExit("--duration: a number with s, m or h (e.g. 3m)")
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    return f"{int(seconds + ramp_seconds + 5)}s"
