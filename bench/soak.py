"""`python -m bench soak --minutes 30`: the staff scenario for a long while (not in CI).

The same dataset, services and locust scenario as `python -m bench load`, plus a Celery
worker (uploads queue their scan and replication tasks). Halfway through, `manage.py
backup_now` and then `manage.py verify_backup` run against the live database. Reported:
errors (target 0), p95 drift (the first window against the last: 5 minutes each, or a third
of a shorter run; server-side, from the app's per-minute latency histograms), the backup and
verify results, and the RSS of gunicorn (master and workers) and of the Celery worker (with
its children) sampled every 10 s with psutil.

Gunicorn recycles a worker after ~2,000 requests (docker/gunicorn.conf.py), as in production,
so the RSS series shows growth between recycles, not an unbounded leak; the workers' restarts
are counted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import threading
import time
from typing import Any

import psutil

from bench.load import report
from bench.load.run import run_locust
from bench.load.services import (
    BIN,
    REPO,
    RESULTS,
    VAR,
    Gunicorn,
    Redis,
    app_env,
    dataset_ensure,
    machine,
    manage,
    prepare_accounts,
    say,
)


def tree_rss(pid: int) -> tuple[int, set[int]]:
    """Resident memory of a process and all its descendants, in bytes, and their pids."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, set()
    total, pids = 0, set()
    for proc in procs:
        try:
            total += proc.memory_info().rss
            pids.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return total, pids


class MemorySampler(threading.Thread):
    def __init__(self, pids: dict[str, int], every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.samples: list[dict[str, Any]] = []
        self.seen: dict[str, set[int]] = {name: set() for name in pids}
        self.stop_event = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop_event.is_set():
            row: dict[str, Any] = {"t": round(time.monotonic() - started)}
            for name, pid in self.pids.items():
                rss, pids = tree_rss(pid)
                row[name] = rss
                self.seen[name] |= pids
            self.samples.append(row)
            self.stop_event.wait(self.every)


def p95_windows(env: dict[str, str], since: datetime.datetime, minutes: int) -> dict[str, Any]:
    """Server-side p95 of the first and last windows of the run, every route together."""
    code = (
        "import datetime, json\n"
        "import django\n"
        "django.setup()\n"
        "from monitoring.models import LATENCY_BUCKET_FIELDS, RequestMinute\n"
        "from monitoring.request_stats import quantile\n"
        f"since = datetime.datetime.fromisoformat({since.isoformat()!r})\n"
        f"window = {max(1, min(5, minutes // 3))}\n"
        "rows = list(RequestMinute.objects.using('monitoring').filter(minute__gte=since)"
        ".exclude(route__startswith='monitoring:').order_by('minute'))\n"
        "minutes = sorted({r.minute for r in rows})\n"
        "def p95(sel):\n"
        "    b = [sum(getattr(r, f) for r in rows if r.minute in sel) "
        "for f in LATENCY_BUCKET_FIELDS]\n"
        "    return quantile(b, 0.95)\n"
        "# The first and last minutes are partial (ramp-up, stop): left out.\n"
        "full = minutes[1:-1] or minutes\n"
        "print(json.dumps({'window_minutes': window, 'first': p95(set(full[:window])),"
        " 'last': p95(set(full[-window:])), 'minutes': len(full),"
        " 'server_errors': sum(r.server_errors for r in rows)}))\n"
    )
    out = subprocess.run(
        [str(BIN / "python"), "-c", code],
        cwd=REPO,
        env={**env, "DJANGO_SETTINGS_MODULE": "school_site.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--spawn-rate", type=float, default=20)
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"soak-{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    say(f"machine: {host['cores']} cores, {host['ram_gb']} GB RAM, load {host['load']}")
    redis = Redis().start()
    server: Gunicorn | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        env = app_env(redis.port)
        dataset_ensure(env, reseed=False)
        manage(env, "backup_keys", "create", quiet=True) if not (
            VAR / "keys" / "backup-keyset.json"
        ).exists() else None
        plan_path = out / "plan.json"
        prepare_accounts(env, args.users, plan_path)
        server = Gunicorn("soak", env).start()
        worker = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "school_site",
                "worker",
                "-Q",
                "default,maintenance",
                "-l",
                "WARNING",
                "-c",
                "1",
            ],
            cwd=REPO,
            env=env,
            stdout=open(VAR / "celery-soak.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        assert server.proc is not None
        sampler = MemorySampler({"gunicorn": server.proc.pid, "celery": worker.pid})
        sampler.start()

        backup: dict[str, Any] = {}

        def backup_in_the_middle() -> None:
            time.sleep(args.minutes * 60 / 2)
            for step, cmd in (("backup", ["backup_now"]), ("verify", ["verify_backup"])):
                say(f"{step} starts (mid-run)")
                t0 = time.monotonic()
                result = subprocess.run(
                    [str(BIN / "python"), "manage.py", *cmd, "-v", "0"],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                backup[step] = {
                    "ok": result.returncode == 0,
                    "seconds": round(time.monotonic() - t0, 1),
                    "output": (result.stdout + result.stderr).strip()[-400:],
                }
                say(
                    f"{step}: {'ok' if result.returncode == 0 else 'FAILED'} in "
                    f"{backup[step]['seconds']} s"
                )

        mid = threading.Thread(target=backup_in_the_middle, daemon=True)
        mid.start()
        say(f"soak: {args.users} users, think time 2-10 s, {args.minutes} min")
        since = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
        scenario = run_locust(
            host=server.url,
            plan=plan_path,
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration=f"{args.minutes * 60}s",
            csv_prefix=out / "soak",
        )
        mid.join(timeout=600)
        # Each worker writes its last figures on its next request once 10 s have passed.
        time.sleep(11)
        for _ in range(40):
            with open(os.devnull, "wb") as sink:
                subprocess.run(
                    ["curl", "-s", f"{server.url}/health/live/"], stdout=sink, check=False
                )
        sampler.stop_event.set()
        sampler.join()
        drift = p95_windows(env, since, args.minutes)
        samples = sampler.samples
        warm = samples[min(len(samples) - 1, 6)]  # after the first minute: imports, caches
        last = samples[-1]
        summary = {
            "started": started.isoformat(timespec="seconds"),
            "machine": host,
            "load_at_end": f"{os.getloadavg()[0]:.2f}",
            "minutes": args.minutes,
            "users": args.users,
            "total": scenario.total,
            "drift": drift,
            "backup": backup,
            "rss": {
                name: {
                    "after_1_min_mb": round(warm[name] / 2**20),
                    "end_mb": round(last[name] / 2**20),
                    "max_mb": round(max(s[name] for s in samples) / 2**20),
                    "processes_seen": len(sampler.seen[name]),
                }
                for name in ("gunicorn", "celery")
            },
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "rss.json").write_text(json.dumps(samples))
        markdown = soak_markdown(summary, str(out.relative_to(REPO)))
        (out / "summary.md").write_text(markdown)
        if not args.no_write:
            report.soak_update(markdown)
        print("\n" + markdown, flush=True)
        ok = scenario.total["failures"] == 0 and all(b["ok"] for b in backup.values())
        return 0 if ok else 1
    finally:
        if worker and worker.poll() is None:
            worker.terminate()
            worker.wait(30)
        if server:
            server.stop()
        redis.stop()


def soak_markdown(s: dict[str, Any], results_dir: str) -> str:
    m, t, d = s["machine"], s["total"], s["drift"]
    backup = "; ".join(
        f"{name} {'ok' if b['ok'] else 'FAILED'} in {b['seconds']} s"
        for name, b in s["backup"].items()
    )
    rss = "; ".join(
        f"{name}: {r['after_1_min_mb']} MB after 1 min, {r['end_mb']} MB at the end, "
        f"{r['max_mb']} MB at most ({r['processes_seen']} processes seen)"
        for name, r in s["rss"].items()
    )
    return (
        f"**Soak** of {s['started']} (`python -m bench soak --minutes {s['minutes']}`, "
        f"raw data in `{results_dir}/`): {s['users']} users with 2-10 s think time for "
        f"{s['minutes']} min on {m['cores']} cores, load average {m['load']} at start, "
        f"{s['load_at_end']} at the end. {t['requests']} requests, **{t['failures']} errors**, "
        f"{t['rps']:.1f} req/s, p95 {t['p95']} ms (locust, whole run). Server-side p95, first "
        f"{d['window_minutes']} min against last {d['window_minutes']} min: "
        f"{_fmt(d['first'])} ms -> {_fmt(d['last'])} ms. Mid-run: {backup or 'not reached'}. "
        f"RSS (process trees, psutil every 10 s): {rss}.\n"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
