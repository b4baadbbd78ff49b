"""One retention policy for the dumps and the physical sets: `prune_backups` keeps the
physical sets the destination's policy keeps (and the sets a kept differential builds on),
expires the others in the repository with pgBackRest, and keeps every moment after the
oldest kept set reachable."""

from __future__ import annotations

import json

import pytest

from tests.backups.pitr import PitrPlatform, available, pitr_platform

pytestmark = [
    pytest.mark.skipif(bool(available()), reason=available() or "-"),
    pytest.mark.xdist_group(name="pitr-retention"),
    pytest.mark.timeout(900),
    pytest.mark.integration,
]


def repository_labels(p: PitrPlatform) -> list[str]:
    status = json.loads(p.manage("pitr", "status", "--json").stdout)
    return sorted(s["label"] for s in status["sets"])


def test_prune_expires_the_physical_sets_the_policy_drops() -> None:
    with pitr_platform() as p:
        p.manage("pitr", "setup")
        for kind in ("full", "diff", "full", "diff"):
            p.manage("backup_now", "--physical", kind)
        # Four sets taken in a minute stand for four days: the runs' dates are moved back
        # (the policy reads the runs, pgBackRest the labels).
        p.shell(
            "import datetime\n"
            "from django.utils import timezone\n"
            "from backups.models import BackupRun, RetentionPolicy\n"
            "runs = list(BackupRun.objects.physical().order_by('started_at'))\n"
            "for age, run in zip((4, 3, 2, 1), runs):\n"
            "    when = timezone.now() - datetime.timedelta(days=age)\n"
            "    BackupRun.objects.filter(pk=run.pk).update(started_at=when, finished_at=when)\n"
            "RetentionPolicy.objects.create(destination='local', keep_daily=1, keep_weekly=0,"
            " keep_monthly=0)\n"
        )
        runs = json.loads(
            p.shell(
                "import json; from backups.models import BackupRun\n"
                "print(json.dumps([[r.pk, r.label, r.backup_type, r.prior_label]"
                " for r in BackupRun.objects.physical().order_by('started_at')]))"
            ).splitlines()[-1]
        )
        (first_full, first_diff, second_full, second_diff) = runs
        assert second_diff[3] == second_full[1]  # the newest differential builds on it
        assert repository_labels(p) == sorted(r[1] for r in runs)

        dry = p.manage("prune_backups", "--dry-run").stdout
        assert "physical:local: keeps 2, would delete 2" in dry, dry
        assert repository_labels(p) == sorted(r[1] for r in runs)

        out = p.manage("prune_backups").stdout
        assert "physical:local: keeps 2, deleted 2" in out, out
        # The newest day's differential and the full it needs stay; the first week's go.
        assert repository_labels(p) == sorted([second_full[1], second_diff[1]])
        pruned = p.shell(
            "from backups.models import BackupRun\n"
            "print(sorted(BackupRun.objects.physical().filter(pruned_at__isnull=False)"
            ".values_list('pk', flat=True)))"
        ).splitlines()[-1]
        assert pruned == str(sorted([first_full[0], first_diff[0]]))
        # What is left still restores, and a second prune has nothing to do.
        assert "keeps 2, deleted 0" in p.manage("prune_backups").stdout
