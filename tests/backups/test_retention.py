"""Retention keeps exactly the right set: properties over random run histories."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backups.retention import Policy, runs_to_keep

pytestmark = pytest.mark.unit

UTC = datetime.UTC
START = datetime.datetime(2024, 1, 1, tzinfo=UTC)

histories = st.lists(
    st.integers(min_value=0, max_value=800 * 24 * 60).map(
        lambda minutes: START + datetime.timedelta(minutes=minutes)
    ),
    max_size=120,
).map(lambda moments: list(enumerate(moments)))
policies = st.builds(
    Policy,
    daily=st.integers(0, 10),
    weekly=st.integers(0, 8),
    monthly=st.integers(0, 14),
)


def reference(runs, policy: Policy) -> set[int]:
    """The rule stated plainly: group by period, take the newest per group, keep the newest
    N groups (written independently of the implementation)."""
    kept: set[int] = set()
    for count, period in (
        (policy.daily, lambda d: d.date()),
        (policy.weekly, lambda d: tuple(d.isocalendar())[:2]),
        (policy.monthly, lambda d: (d.year, d.month)),
    ):
        groups: dict[object, tuple[datetime.datetime, int]] = {}
        for rid, when in runs:
            key = period(when)
            groups[key] = max(groups.get(key, (when, rid)), (when, rid))
        newest_groups = sorted(groups.values(), reverse=True)[:count]
        kept.update(rid for _when, rid in newest_groups)
    return kept


@settings(max_examples=300, deadline=None)
@given(histories, policies)
def test_keeps_exactly_what_the_rule_says(runs, policy) -> None:
    assert runs_to_keep(runs, policy) == reference(runs, policy)


@settings(max_examples=200, deadline=None)
@given(histories, policies)
def test_pruning_twice_changes_nothing(runs, policy) -> None:
    kept = runs_to_keep(runs, policy)
    again = runs_to_keep([(rid, when) for rid, when in runs if rid in kept], policy)
    assert again == kept


@settings(max_examples=200, deadline=None)
@given(histories, policies)
def test_bounded_and_keeps_the_newest(runs, policy) -> None:
    kept = runs_to_keep(runs, policy)
    assert len(kept) <= policy.daily + policy.weekly + policy.monthly
    if runs and (policy.daily or policy.weekly or policy.monthly):
        newest = max(runs, key=lambda item: (item[1], item[0]))[0]
        assert newest in kept


def test_one_a_day_for_a_year_keeps_7_daily_4_weekly_12_monthly() -> None:
    runs = [(i, START + datetime.timedelta(days=i, hours=2)) for i in range(365)]
    kept = runs_to_keep(runs, Policy(daily=7, weekly=4, monthly=12))
    newest_day = runs[-1][1]
    # the last 7 days, plus the newest of earlier ISO weeks and earlier months
    assert {r for r, w in runs if (newest_day - w).days < 7} <= kept
    assert 12 <= len(kept) <= 23


def test_time_zone_decides_the_day() -> None:
    late = datetime.datetime(2024, 3, 1, 23, 30, tzinfo=UTC)  # 1 March in UTC...
    early = datetime.datetime(2024, 3, 1, 1, 0, tzinfo=UTC)
    tokyo = datetime.timezone(datetime.timedelta(hours=9))  # ...2 March and 1 March in Tokyo
    assert runs_to_keep([(1, early), (2, late)], Policy(1, 0, 0)) == {2}
    assert runs_to_keep([(1, early), (2, late)], Policy(2, 0, 0), tz=tokyo) == {1, 2}
