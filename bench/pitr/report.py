"""The Markdown of one `bench pitr` run, and its figures against the issue's targets.

Everything here reads the run's summary (a dict, as written to summary.json), so a fixture
renders the same way a run does.
"""

from __future__ import annotations

import statistics
from typing import Any

# The targets.
RATIO_LIMIT = 0.3  # restore to a moment / logical restore, wall time
RPO_LIMIT_S = 60.0
RSS_LIMIT_MIB = 100e6 / 2**20  # "100 MB": 95.4 MiB
OVERHEAD_LIMIT_PCT = 5.0

PITR_RESTORE = "restore_backup --to-time"
LOGICAL_RESTORE = "restore_backup (logical)"
PG_RESTORE = "createdb + pg_restore"


def _of(s: dict[str, Any], step: str, contender: str) -> list[dict[str, Any]]:
    return [m for m in s["measurements"] if m["step"] == step and m["contender"] == contender]


def _mean_seconds(
    s: dict[str, Any], step: str, contender: str, key: str = "seconds"
) -> float | None:
    rows = _of(s, step, contender)
    return statistics.mean(m.get(key, 0.0) for m in rows) if rows else None


def _overhead(s: dict[str, Any], step: str, key: str = "seconds") -> float | None:
    platform = _mean_seconds(s, step, "platform", key)
    hand = _mean_seconds(s, step, "by hand", key)
    if platform is None or not hand:
        return None
    return (platform / hand - 1) * 100


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _ours(s: dict[str, Any]) -> tuple[float, float, str]:
    """The largest of our processes anywhere in the run, the largest sum of ours at once,
    and the step where the largest process was."""
    ours = [m for m in s["measurements"] if m["ours_peak_mib"] > 0]
    if not ours:
        return 0.0, 0.0, "-"
    top = max(ours, key=lambda m: m["ours_peak_mib"])
    return (
        top["ours_peak_mib"],
        max(m["ours_sum_mib"] for m in ours),
        f"{top['step']} / {top['contender']}",
    )


def summary_targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its figure and whether it was met (None: not measured)."""
    ratio = _ratio(
        _mean_seconds(s, "restore", PITR_RESTORE), _mean_seconds(s, "restore", LOGICAL_RESTORE)
    )
    measured_rpo = [c["rpo_seconds"] for c in _rpo_cases(s["facts"]) if c.get("rpo_seconds")]
    rpo = max(measured_rpo) if measured_rpo else None
    peak, at_once, where = _ours(s)
    full, diff = _overhead(s, "full backup"), _overhead(s, "differential backup")
    overheads = [o for o in (full, diff) if o is not None]

    def met(ok: bool, measured: bool) -> bool | None:
        return ok if measured else None

    return [
        {
            "target": f"restore to a moment ≤ {RATIO_LIMIT}x the logical restore's wall time",
            "figure": "-" if ratio is None else f"{ratio:.2f}x",
            "met": met(ratio is not None and ratio <= RATIO_LIMIT, ratio is not None),
        },
        {
            "target": f"RPO ≤ {RPO_LIMIT_S:.0f} s",
            "figure": (
                "-"
                if rpo is None
                else ", ".join(
                    f"{_s(c['rpo_seconds'])} s {c.get('case', '')}".strip()
                    for c in _rpo_cases(s["facts"])
                )
            ),
            "met": met(rpo is not None and rpo <= RPO_LIMIT_S, rpo is not None),
        },
        {
            "target": "our own processes < 100 MB (95.4 MiB) RSS, each",
            "figure": (
                "-"
                if not peak
                else f"largest {peak:.1f} MiB ({where}); all of ours at once at most "
                f"{at_once:.1f} MiB"
            ),
            # Judged per process, as the backups' target was (BENCHMARKS.md "Backups"): the
            # platform splits the byte path into a child so that no process carries both.
            "met": met(peak < RSS_LIMIT_MIB, bool(peak)),
            "note": (
                f"the sum of a command's processes ({at_once:.1f} MiB) is over"
                if peak and at_once >= RSS_LIMIT_MIB
                else ""
            ),
        },
        {
            "target": f"overhead over pgBackRest by hand < {OVERHEAD_LIMIT_PCT:.0f} %",
            "figure": ("-" if not overheads else f"full {_pct(full)}, differential {_pct(diff)}"),
            "met": met(
                bool(overheads) and all(o < OVERHEAD_LIMIT_PCT for o in overheads),
                bool(overheads),
            ),
        },
    ]


def _rpo_cases(facts: dict[str, Any]) -> list[dict[str, Any]]:
    rpo = facts.get("rpo") or []
    return [rpo] if isinstance(rpo, dict) else list(rpo)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _mib(value: float | int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def _verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "not measured"}[met]


def pitr_markdown(s: dict[str, Any]) -> str:
    m, a, f = s["machine"], s["args"], s["facts"]
    n = s["neighbours"]
    data = f.get("dataset", {})
    load = f.get("write_load", {})
    minutes = s["run_seconds"] / 60
    others = "; ".join(f"`{name}` {sec} s" for name, sec in n["others_cpu_seconds"]) or "none"
    lines = [
        f"Run of {s['started']} at commit `{s['commit']}`: `{s['command'].strip()}` "
        f"({minutes:.0f} min; raw results in `{s['results_dir']}/`). Machine: {m['cores']} "
        f"cores ({m['cpu']}), {m['ram_gb']} GB RAM; load average {m['load']} (1/5/15 min) at "
        f"start, {n['load_min']}-{n['load_max']} during the run (mean {n['load_mean']}, "
        f"sampled every 15 s), {s['load_at_end']} at the end. Other processes' CPU time during "
        f"the run: {others}.",
        "",
    ]
    if s.get("error"):
        lines += [f"**The run stopped early**: {s['error'][:600]}", ""]
    if data:
        lines += [
            f"Dataset: `{data['source']}` copied from the shared cluster into a throwaway "
            f"PostgreSQL 15 cluster (fsync on, archiving through pgBackRest 2.45: zstd level "
            f"3, AES-256, local repository, `archive_timeout` {a['archive_timeout']} s)"
            + (
                f", grown by {data['extra_periods']} lessons a day of period attendance "
                f"({data['rows_added']:,} rows copied from the whole-day marks into "
                "`students_attendancerecord` itself, indexes rebuilt)"
                if data["extra_periods"]
                else ""
            )
            + f": **{data['database_bytes'] / 1e9:.2f} GB** (`pg_database_size`; "
            f"{data['database_bytes'] / 2**30:.2f} GiB), {data['students']:,} students, "
            f"{data['attendance_rows']:,} attendance rows, {data['grades']:,} grades.",
            "",
        ]
    if load:
        lines += [
            f"Write load between the full and the differential backups: {load['seconds'] / 60:.1f} "
            f"min at {a['write_rate']:g} transactions/s (class registers of ~28 rows 70 %, "
            f"corrections 20 %, a class's marks 10 %; one connection as the tables' owner): "
            f"{load['transactions']:,} transactions, {load['rows']:,} rows, {load['late']} "
            f"started over 1 s late, {load['wal_bytes'] / 2**20:,.0f} MiB of WAL "
            f"({load['wal_mib_per_minute']} MiB/min).",
            "",
        ]
    lines += [
        "Each kind of backup runs A B B A (platform, by hand, by hand, platform), "
        f"{a.get('backup_rounds', 1)} time(s); the restores in turn, then in reverse order "
        f"({a.get('restore_rounds', 1)} round(s)); each step after the archiver has caught up "
        "and a checkpoint. Wall time from start to exit; CPU time of the command and the "
        "descendants it waited for (not PostgreSQL's backends); RSS sampled every 0.1 s "
        "over the command's process tree, each process's peak its kernel high-water mark "
        "(VmHWM). *Ours* is the platform's Python processes (`manage.py` and its streaming "
        "child); pgBackRest, pg_dump/pg_restore and the restored server are shown apart.",
        "",
        "| step | contender | wall s | CPU s | ours: largest MiB | ours at once MiB "
        "| pgBackRest MiB | pg tools MiB | stored | load 1 min | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in s["measurements"]:
        k = r["kinds_mib"]
        lines.append(
            f"| {r['step']} | {r['contender']} | {r['seconds']:.1f} "
            f"| {r.get('cpu_seconds', 0):.1f} "
            f"| {r['ours_peak_mib'] or '-'} | {r['ours_sum_mib'] or '-'} "
            f"| {k.get('pgbackrest', '-')} | {k.get('pg tools', '-')} "
            f"| {_mib(r['output_bytes'])} | {r['load_start']}-{r['load_end']} "
            f"| {r['note'].replace('|', '/')} |"
        )
    full_p, full_h = (
        _mean_seconds(s, "full backup", "platform"),
        _mean_seconds(s, "full backup", "by hand"),
    )
    diff_p, diff_h = (
        _mean_seconds(s, "differential backup", "platform"),
        _mean_seconds(s, "differential backup", "by hand"),
    )
    dump_p, dump_h = (
        _mean_seconds(s, "logical backup", "backup_now"),
        _mean_seconds(s, "logical backup", "pg_dump -Fc"),
    )
    pitr = _mean_seconds(s, "restore", PITR_RESTORE)
    logical = _mean_seconds(s, "restore", LOGICAL_RESTORE)
    plain = _mean_seconds(s, "restore", PG_RESTORE)
    lines += [
        "",
        "| means | platform | by hand | platform / by hand |",
        "| --- | ---: | ---: | ---: |",
        f"| full backup (`backup_now --physical full` / `pgbackrest backup --type=full`) "
        f"| {_s(full_p)} s | {_s(full_h)} s | {_pct(_overhead(s, 'full backup'))} |",
        f"| differential backup | {_s(diff_p)} s | {_s(diff_h)} s "
        f"| {_pct(_overhead(s, 'differential backup'))} |",
        f"| full backup, CPU of the command's processes "
        f"| {_s(_mean_seconds(s, 'full backup', 'platform', 'cpu_seconds'))} s "
        f"| {_s(_mean_seconds(s, 'full backup', 'by hand', 'cpu_seconds'))} s "
        f"| {_pct(_overhead(s, 'full backup', 'cpu_seconds'))} |",
        f"| differential backup, CPU of the command's processes "
        f"| {_s(_mean_seconds(s, 'differential backup', 'platform', 'cpu_seconds'))} s "
        f"| {_s(_mean_seconds(s, 'differential backup', 'by hand', 'cpu_seconds'))} s "
        f"| {_pct(_overhead(s, 'differential backup', 'cpu_seconds'))} |",
        f"| logical backup (`backup_now` / `pg_dump -Fc`) | {_s(dump_p)} s | {_s(dump_h)} s "
        f"| {_ratio_text(dump_p, dump_h)} |",
    ]
    costs = f.get("fixed_costs")
    if costs:
        lines += [
            "",
            "What the platform adds around pgBackRest, each part timed alone (medians of 3): "
            f"starting `manage.py backup_now` (Python and Django) {costs['django_start_seconds']} "
            f"s, one `pgbackrest info --output=json` {costs['pgbackrest_info_seconds']} s (the "
            "platform runs two, before and after the backup, to find the new set), then its "
            "run row, audit entry and a `SHOW server_version`. These do not grow with the "
            "database; pgBackRest's own time does.",
        ]
    lines += [
        "",
        "| restore of the same data | wall s | / logical restore |",
        "| --- | ---: | ---: |",
        f"| `restore_backup --to-time` (a new cluster, WAL replayed to a moment of the write "
        f"load) | {_s(pitr)} | {_ratio_text(pitr, logical)} |",
        f"| `restore_backup <run> --target-database` (logical, a new database) | {_s(logical)} "
        f"| 1.00x |",
        f"| `createdb` + `pg_restore --single-transaction` of the `pg_dump -Fc` file "
        f"| {_s(plain)} | {_ratio_text(plain, logical)} |",
    ]
    checks = [c for c in f.get("restore_checks", []) if c["step"] == "restore to a moment"]
    if checks:
        c = checks[0]
        same = all(
            (x["restored_max_seq"], x["ok"]) == (c["restored_max_seq"], c["ok"]) for x in checks
        )
        replays = ", ".join(_s(x.get("replay_seconds")) for x in checks)
        lines += [
            "",
            f"Restore to {c['moment']} ({len(checks)} time(s), "
            f"{'the same result each time' if same else 'DIFFERENT results'}): the restored "
            f"cluster's newest write is #{c['restored_max_seq']} of "
            f"{c['restored_newest_write']}; #{c['last_acked_before_moment']} was the last "
            f"acknowledged before the moment "
            f"({'consistent' if all(x['ok'] for x in checks) else 'NOT consistent'}: nothing "
            "acknowledged before it missing, nothing begun after it present). PostgreSQL "
            f"replayed the WAL from the full backup to the moment in {replays} s.",
        ]
    for rpo in _rpo_cases(f):
        load = rpo["write_load"]
        lines += [
            "",
            f"**RPO, {rpo.get('case', 'under the write load')}**: {load['seconds'] / 60:.1f} "
            f"min at {load.get('tps', '?')} transactions/s, then the server was killed (SIGKILL "
            f"to the postmaster and every child at once) at {rpo['killed_at']}, when its newest "
            f"archived WAL segment was {rpo['newest_archive_age_at_kill']} s old (segments "
            f"were archived every {rpo['longest_archive_gap']} s at the longest before, "
            f"`archive_timeout` {rpo['archive_timeout']} s: the kill was timed for the worst "
            "moment), and its data directory taken away. `recover_server` rebuilt it from the "
            f"repository to the latest archived WAL: newest write recovered "
            f"#{rpo['recovered_max_seq']} (last transaction {rpo['recovered_to']}), last "
            f"acknowledged before the kill #{rpo['last_acked_seq']}: "
            f"**{rpo['acked_transactions_lost']} acknowledged transactions lost, "
            f"{_s(rpo['rpo_seconds'])} s of writes**"
            + (
                f" (the newest recovered was acknowledged {_s(rpo['rpo_seconds'])} s before the "
                f"kill, the first lost {_s(rpo['rpo_lower_seconds'])} s before it)."
                if rpo.get("rpo_lower_seconds") is not None
                else "."
            ),
        ]
    if _rpo_cases(f):
        lines += [
            "",
            "What is lost is bounded by the time a WAL segment takes to be closed (when full, "
            "or after `archive_timeout`) plus its push to the repository: a busy server "
            "closes segments every few seconds, a quiet one only at `archive_timeout`. "
            "`recover_server` was given one of the operator's backup codes, not an "
            "authenticator code: it checks the code only after the restore and the replay, "
            "when a code typed at the start has expired.",
        ]
    lines += [
        "",
        "| target | figure | |",
        "| --- | --- | --- |",
    ]
    for t in s["targets"]:
        note = f"; {t['note']}" if t.get("note") else ""
        lines.append(f"| {t['target']} | {t['figure']} | {_verdict(t['met'])}{note} |")
    phases = ", ".join(f"{name} {sec / 60:.1f} min" for name, sec in s["phases"].items())
    lines += ["", f"Time per phase: {phases}."]
    return "\n".join(lines) + "\n"


def _ratio_text(a: float | None, b: float | None) -> str:
    ratio = _ratio(a, b)
    return "-" if ratio is None else f"{ratio:.2f}x"
