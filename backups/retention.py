"""Which backups a retention policy keeps: a pure function, property-tested.

Grandfather-father-son, as restic's and borg's `--keep-daily/weekly/monthly` count it: for
each of the last `daily` calendar days *that have a backup*, keep the newest backup of that
day; likewise for the last `weekly` ISO weeks and the last `monthly` months. A backup kept by
any rule is kept. Counting days that have backups (not calendar days back from today) means
a stopped scheduler never lets the last good backups age out.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Policy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12


def _day(moment: datetime.datetime) -> tuple[int, ...]:
    return (moment.year, moment.month, moment.day)


def _week(moment: datetime.datetime) -> tuple[int, ...]:
    iso = moment.isocalendar()
    return (iso.year, iso.week)


def _month(moment: datetime.datetime) -> tuple[int, ...]:
    return (moment.year, moment.month)


def runs_to_keep(
    runs: Iterable[tuple[K, datetime.datetime]],
    policy: Policy,
    *,
    tz: datetime.tzinfo = datetime.UTC,
) -> set[K]:
    """The ids of `runs` ((id, started_at) pairs, any order) that `policy` keeps.

    Buckets are taken in `tz` (the school district's time zone: "Monday's backup" means
    Monday there). Ties within a bucket go to the later time, then the larger id.
    """
    ordered: Sequence[tuple[K, datetime.datetime]] = sorted(
        ((rid, when.astimezone(tz)) for rid, when in runs),
        key=lambda item: (item[1], item[0]),  # type: ignore[arg-type,return-value]
        reverse=True,
    )
    keep: set[K] = set()
    rules: list[tuple[int, Callable[[datetime.datetime], tuple[int, ...]]]] = [
        (policy.daily, _day),
        (policy.weekly, _week),
        (policy.monthly, _month),
    ]
    for count, bucket_of in rules:
        seen: set[tuple[int, ...]] = set()
        for rid, when in ordered:
            if len(seen) >= count:
                break
            bucket = bucket_of(when)
            if bucket not in seen:
                seen.add(bucket)
                keep.add(rid)
    return keep
