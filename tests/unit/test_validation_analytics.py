"""Re-ban and threshold-simulator arithmetic on histories small enough to check by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.domain.validation_analytics import (
    Admission,
    AttemptOutcome,
    BanMark,
    month_of,
    reban_rates,
    rebanned,
    threshold_table,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: float) -> float:
    return (T0 + timedelta(days=n)).timestamp()


def test_a_ban_within_d_days_of_an_admission_in_the_same_cluster_is_a_reban() -> None:
    admissions = [
        Admission("a", 1, day(0)),  # banned on day 10: re-ban
        Admission("b", 1, day(0)),  # banned on day 31: outside 30 days
        Admission("c", 1, day(0)),  # banned in another cluster
        Admission("d", 1, day(0)),  # re-admitted on day 5, banned on day 8: the ban belongs to the second admission
        Admission("d", 1, day(5)),
        Admission("e", 1, day(3)),  # banned before its admission
        Admission("f", 1, day(0)),  # never banned
    ]
    bans = [
        BanMark("a", 1, day(10)),
        BanMark("b", 1, day(31)),
        BanMark("c", 2, day(2)),
        BanMark("d", 1, day(8)),
        BanMark("e", 1, day(1)),
    ]
    assert rebanned(admissions, bans, 30) == [True, False, False, False, True, False, False]
    assert rebanned(admissions, bans, 31) == [True, True, False, False, True, False, False]


def test_rates_per_group_and_month_keys() -> None:
    rates = reban_rates(["x", "x", "y", "x"], [True, False, False, True])
    assert [(r.group, r.admissions, r.rebanned) for r in rates] == [("x", 3, 2), ("y", 1, 0)]
    assert rates[0].rate == pytest.approx(2 / 3)
    assert month_of(datetime(2026, 2, 28, 23, tzinfo=UTC)) == "2026-02"
    assert month_of(datetime(2026, 2, 28, 23, 59, tzinfo=UTC).timestamp()) == "2026-02"


def test_threshold_table_matches_the_hand_computation() -> None:
    # N = 4. Three attempts passed (one later re-banned); first failures at passes 1, 2, 3 and 4.
    outcomes = [
        AttemptOutcome(4, None, rebanned=True),
        AttemptOutcome(4, None),
        AttemptOutcome(4, None),
        AttemptOutcome(4, 1),
        AttemptOutcome(4, 2),
        AttemptOutcome(4, 3),
        AttemptOutcome(4, 4),
    ]
    # GPU-hours per pass number: 7 attempts ran pass 1, 6 pass 2, 5 pass 3, 4 pass 4; one hour on 8 GPUs each.
    hours = {1: 56.0, 2: 48.0, 3: 40.0, 4: 32.0}
    rows = threshold_table(outcomes, hours)
    got = [
        (r.k, r.admitted, r.extra_admitted, r.value_of_pass, r.expected_bad_admitted, r.gpu_hours_saved) for r in rows
    ]
    assert got == [
        (1, 6, 3, 1, 4, 120.0),
        (2, 5, 2, 1, 3, 72.0),
        (3, 4, 1, 1, 2, 32.0),
        (4, 3, 0, 1, 1, 0.0),
    ]
    first = rows[0]
    assert first.extra_share == pytest.approx(3 / 6)
    assert first.reban_rate_at_n == pytest.approx(1 / 3)
    assert first.admitted_at_n == 3 and first.rebanned_at_n == 1
    assert first.gpu_hours_per_extra_admitted == pytest.approx(40.0)
    assert rows[-1].gpu_hours_per_extra_admitted is None
    assert sum(r.value_of_pass for r in rows) == 4


def test_mixed_pass_counts_use_the_largest_n_and_empty_history_gives_no_rows() -> None:
    rows = threshold_table([AttemptOutcome(2, None), AttemptOutcome(3, 3)], {})
    assert [(r.k, r.admitted, r.extra_admitted) for r in rows] == [(1, 2, 1), (2, 2, 1), (3, 1, 0)]
    assert threshold_table([], {}) == []
