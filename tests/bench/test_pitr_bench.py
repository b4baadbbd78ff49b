"""`python -m bench pitr`: its command line parses (defaults at the issue's values, nonsense
refused) and its Markdown renders from a fixture summary, each target judged from the
figures; and the BENCHMARKS.md block is replaced in place, not appended twice."""

from __future__ import annotations

import copy

import pytest

from bench.pitr import report
from bench.pitr.cluster import Totp
from bench.pitr.run import PITR_HEADING, PITR_MARK, parse_args

pytestmark = pytest.mark.unit


def measured(step: str, contender: str, seconds: float, ours: float = 0.0, **extra) -> dict:
    return {
        "step": step,
        "contender": contender,
        "seconds": seconds,
        "cpu_seconds": extra.pop("cpu", seconds / 2),
        "started_at": "2026-12-02T12:00:00+00:00",
        "ours_peak_mib": ours,
        "ours_sum_mib": extra.pop("ours_sum", ours),
        "kinds_mib": {"pgbackrest": 61.5} if "backup" in step else {"pg tools": 9.0},
        "processes": {},
        "load_start": 2.0,
        "load_end": 2.5,
        "output_bytes": extra.pop("output_bytes", None),
        "note": extra.pop("note", ""),
        "stdout_tail": "",
    }


SUMMARY = {
    "started": "2026-12-02T12:00:00+00:00",
    "commit": "abc1234",
    "command": "python -m bench pitr --write-minutes 10",
    "args": {"archive_timeout": 60, "write_rate": 10.0, "backup_rounds": 1, "restore_rounds": 1},
    "machine": {"cores": 2, "cpu": "Test CPU", "ram_gb": 23.5, "load": "2.00 2.00 2.00"},
    "neighbours": {
        "load_min": 1.5,
        "load_mean": 2.4,
        "load_max": 4.0,
        "loads": [],
        "others_cpu_seconds": [["pytest and its xdist workers", 120]],
    },
    "load_at_end": "2.10 2.20 2.30",
    "run_seconds": 2400,
    "phases": {"full backups": 300.0, "restores": 600.0},
    "facts": {
        "dataset": {
            "source": "schoolhouse_load",
            "extra_periods": 5,
            "rows_added": 7_200_000,
            "students": 20_000,
            "attendance_rows": 8_640_000,
            "grades": 240_000,
            "database_bytes": 1_712_000_000,
        },
        "write_load": {
            "seconds": 600.0,
            "transactions": 6000,
            "rows": 140_000,
            "late": 0,
            "wal_bytes": 1_000 * 2**20,
            "wal_mib_per_minute": 100.0,
        },
        "fixed_costs": {"django_start_seconds": 0.62, "pgbackrest_info_seconds": 0.08},
        "restore_checks": [
            {
                "step": "restore to a moment",
                "moment": "2026-12-02T12:20:00+00:00",
                "restored_max_seq": 5400,
                "restored_newest_write": "2026-12-02T12:19:59.95+00:00",
                "last_acked_before_moment": 5400,
                "ok": True,
                "replay_seconds": replay,
            }
            for replay in (8.1, 12.5)
        ],
        "rpo": [
            {
                "case": "under the write load",
                "archive_timeout": 60,
                "write_load": {"seconds": 120.0, "tps": 10.0},
                "killed_at": "2026-12-02T12:40:00+00:00",
                "newest_archive_age_at_kill": 9.8,
                "longest_archive_gap": 11.3,
                "recovered_max_seq": 7100,
                "recovered_to": "2026-12-02 12:39:49+00:00",
                "last_acked_seq": 7210,
                "acked_transactions_lost": 110,
                "rpo_seconds": 11.2,
            },
            {
                "case": "a trickle of writes",
                "archive_timeout": 60,
                "write_load": {"seconds": 150.0, "tps": 0.2},
                "killed_at": "2026-12-02T12:45:00+00:00",
                "newest_archive_age_at_kill": 58.6,
                "longest_archive_gap": 60.1,
                "recovered_max_seq": 7240,
                "recovered_to": "2026-12-02 12:44:01+00:00",
                "last_acked_seq": 7252,
                "acked_transactions_lost": 12,
                "rpo_seconds": 59.3,
                "rpo_lower_seconds": 56.1,
            },
        ],
    },
    "measurements": [
        measured("full backup", "platform", 62.0, 76.0, output_bytes=500 * 2**20),
        measured("full backup", "by hand", 60.0),
        measured("full backup", "by hand", 60.0),
        measured("full backup", "platform", 62.0, 76.0),
        measured("differential backup", "platform", 33.0, 76.0),
        measured("differential backup", "by hand", 30.0),
        measured("differential backup", "by hand", 30.0),
        measured("differential backup", "platform", 33.0, 76.0),
        measured("logical backup", "backup_now", 25.0, 77.0, ours_sum=128.0),
        measured("logical backup", "pg_dump -Fc", 30.0),
        measured("restore", report.PITR_RESTORE, 50.0, 76.0, note="replayed to …"),
        measured("restore", report.LOGICAL_RESTORE, 200.0, 77.0, ours_sum=118.0),
        measured("restore", report.PG_RESTORE, 190.0),
    ],
    "error": "",
    "results_dir": "bench/results/pitr-20261202-120000",
}


def targets(summary: dict) -> dict[str, tuple[str, bool | None]]:
    return {t["target"].split(" ")[0]: (t["figure"], t["met"]) for t in summary["targets"]}


def test_the_command_line_defaults_to_the_issues_values_and_refuses_nonsense(capsys) -> None:
    args = parse_args([])
    assert args.write_minutes == 10.0
    assert args.archive_timeout == 60  # the platform's PITR_ARCHIVE_TIMEOUT default
    assert args.extra_periods == 5 and not args.no_write
    assert args.backup_rounds == 2 and args.restore_rounds == 2
    args = parse_args(["--write-minutes", "2.5", "--extra-periods", "0", "--no-write"])
    assert args.write_minutes == 2.5 and args.extra_periods == 0 and args.no_write
    for wrong in (["--write-minutes", "0"], ["--archive-timeout", "61"], ["--restore-rounds", "0"]):
        with pytest.raises(SystemExit):
            parse_args(wrong)
    assert "must" in capsys.readouterr().err


def test_the_markdown_renders_every_figure_against_its_target() -> None:
    summary = copy.deepcopy(SUMMARY)
    summary["targets"] = report.summary_targets(summary)
    judged = targets(summary)
    assert judged["restore"] == ("0.25x", True)  # 50 / 200
    # The worst case decides: the trickle, where archive_timeout closes the segments.
    assert judged["RPO"] == ("11.2 s under the write load, 59.3 s a trickle of writes", True)
    figure, met = judged["our"]
    # Per process (77.0 MiB), with the sum of a command's processes said beside it.
    assert met is True and "largest 77.0 MiB" in figure and "128.0" in figure
    assert judged["overhead"] == ("full +3.3 %, differential +10.0 %", False)

    markdown = report.pitr_markdown(summary)
    assert "**1.71 GB** (`pg_database_size`" in markdown
    assert "| full backup | platform | 62.0 | 31.0 | 76.0 | 76.0 | 61.5 |" in markdown
    assert "| full backup, CPU of the command's processes | 31.0 s | 30.0 s | +3.3 % |" in markdown
    assert "| differential backup | 33.0 s | 30.0 s | +10.0 % |" in markdown
    assert "| 50.0 | 0.25x |" in markdown
    assert "**110 acknowledged transactions lost, 11.2 s of writes**" in markdown
    assert "**RPO, a trickle of writes**: 2.5 min at 0.2 transactions/s" in markdown
    assert "**12 acknowledged transactions lost, 59.3 s of writes** (the newest" in markdown
    assert "the first lost 56.1 s before it)" in markdown
    # Two restores to the same moment with the same result: said once.
    assert markdown.count("Restore to 2026-12-02T12:20:00+00:00 (2 time(s), the same") == 1
    assert "to the moment in 8.1, 12.5 s." in markdown
    assert "**not met**" in markdown  # the differential's overhead
    assert "`pytest and its xdist workers` 120 s" in markdown
    assert "(Python and Django) 0.62 s, one `pgbackrest info --output=json` 0.08 s" in markdown
    assert "stopped early" not in markdown


def test_a_run_that_stopped_early_says_so_and_leaves_targets_unmeasured() -> None:
    summary = copy.deepcopy(SUMMARY)
    summary["measurements"] = summary["measurements"][:4]
    summary["facts"].pop("rpo")
    summary["facts"].pop("restore_checks")
    summary["error"] = "restore_backup exited 1: Restore refused"
    summary["targets"] = report.summary_targets(summary)
    judged = targets(summary)
    assert judged["RPO"] == ("-", None) and judged["restore"] == ("-", None)
    markdown = report.pitr_markdown(summary)
    assert "**The run stopped early**: restore_backup exited 1" in markdown
    assert "not measured" in markdown


def test_the_block_is_replaced_in_place(tmp_path, monkeypatch) -> None:
    from bench.load import report as load_report

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Load\n\nthe load run\n\n<!-- load-notes -->\n\nnotes\n")
    monkeypatch.setattr(load_report, "BENCHMARKS", path)
    load_report.block_update(PITR_MARK, PITR_HEADING, "first run")
    load_report.block_update(PITR_MARK, PITR_HEADING, "second run")
    text = path.read_text()
    assert text.count(PITR_HEADING) == 1 and text.count(PITR_MARK) == 2
    assert "second run" in text and "first run" not in text and "notes" in text


def test_the_operators_codes_are_rfc_6238_and_never_reused(monkeypatch) -> None:
    import time

    # RFC 6238's SHA-1 test vector: 59 s -> 94287082 (8 digits), so 287082 in 6.
    monkeypatch.setattr(time, "time", lambda: 59.0)
    totp = Totp()
    assert totp.code() == "287082"
    second = totp.code()  # the next step, one ahead of the clock: tolerated by the platform
    assert second != "287082" and totp.last_step == 2
