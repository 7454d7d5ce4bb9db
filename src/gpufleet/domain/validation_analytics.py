"""Re-ban rates and the threshold simulator: what the validation history says a pass is worth.

Pure arithmetic over per-attempt summaries. Services aggregate the raw pass records in SQL (one row per attempt,
one sum per pass number) so that a million records never cross into Python one by one.

Definitions, in the operators' terms:
- An *admission* is a passing attempt (the lifecycle admits a node only after one); it happens when its last pass
  finishes.
- A *re-ban* is a ban of the node in the same cluster within D days after an admission, and before the node's next
  admission (a ban belongs to the most recent admission before it).
- For each completed full-suite attempt (slow path or canary), *j* is its first failing pass, or none if all N
  passed. With only k < N passes required, attempts with j in k+1..N would have been admitted too: the *extra
  admitted*. The *value of pass j* is the number of attempts whose first failure was at pass j.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, NamedTuple


class Admission(NamedTuple):
    node_id: str
    cluster_id: int
    at: float
    """Seconds since the epoch: histories of a hundred thousand admissions compare faster as numbers."""


class BanMark(NamedTuple):
    node_id: str
    cluster_id: int
    at: float
    """Seconds since the epoch."""


DAY_SECONDS = 86_400.0


def rebanned(admissions: Sequence[Admission], bans: Sequence[BanMark], days: int) -> list[bool]:
    """For each admission, whether it was followed by a re-ban (see the module's definition)."""
    window = days * DAY_SECONDS
    bans_by_node: dict[str, list[BanMark]] = {}
    for ban in bans:
        bans_by_node.setdefault(ban.node_id, []).append(ban)
    ban_times: dict[str, list[float]] = {}
    for node_id, items in bans_by_node.items():
        items.sort(key=lambda b: b.at)
        ban_times[node_id] = [b.at for b in items]
    next_admission: dict[int, float] = {}
    by_node: dict[str, list[int]] = {}
    for index, admission in enumerate(admissions):
        if admission.node_id in bans_by_node:
            by_node.setdefault(admission.node_id, []).append(index)
    for indexes in by_node.values():
        indexes.sort(key=lambda i: admissions[i].at)
        for current, following in pairwise(indexes):
            next_admission[current] = admissions[following].at
    flags = [False] * len(admissions)
    for indexes in by_node.values():
        for i in indexes:
            admission = admissions[i]
            end = admission.at + window
            cut = next_admission.get(i)
            if cut is not None and cut < end:
                end = cut
            node_bans = bans_by_node[admission.node_id]
            times = ban_times[admission.node_id]
            position = bisect_right(times, admission.at)
            while position < len(times) and times[position] <= end:
                if node_bans[position].cluster_id == admission.cluster_id:
                    flags[i] = True
                    break
                position += 1
    return flags


@dataclass(frozen=True)
class RebanRate:
    group: str
    admissions: int
    rebanned: int

    @property
    def rate(self) -> float:
        return self.rebanned / self.admissions if self.admissions else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "admissions": self.admissions, "rebanned": self.rebanned, "rate": self.rate}


def reban_rates(groups: Sequence[str], flags: Sequence[bool]) -> list[RebanRate]:
    """Admissions and re-bans per group, largest rate first (ties by name)."""
    return rates_from_counts(Counter(groups), Counter(g for g, flag in zip(groups, flags, strict=True) if flag))


def rates_from_counts(admissions: Mapping[str, int], rebanned: Mapping[str, int]) -> list[RebanRate]:
    """The same from counts per group, largest rate first (ties by name)."""
    rates = [RebanRate(g, n, rebanned.get(g, 0)) for g, n in admissions.items()]
    return sorted(rates, key=lambda r: (-r.rate, r.group))


def month_of(at: datetime | float) -> str:
    when = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return f"{when.year:04d}-{when.month:02d}"


# ---------------------------------------------------------------------------------------------------------------
# The threshold simulator.


@dataclass(frozen=True)
class AttemptOutcome:
    """A completed full-suite attempt, reduced to what the simulator needs."""

    passes_required: int
    first_failed_pass: int | None
    rebanned: bool = False
    """For a passing attempt: its admission was followed by a re-ban."""


@dataclass(frozen=True)
class ThresholdRow:
    k: int
    attempts: int
    admitted: int
    extra_admitted: int
    extra_share: float
    """The extra admitted's share of all admitted at k."""
    admitted_at_n: int
    rebanned_at_n: int
    reban_rate_at_n: float
    """The observed re-ban rate of the nodes admitted with every pass required."""
    expected_bad_admitted: int
    """Extra admitted plus the admitted-at-N nodes that were later re-banned."""
    expected_bad_share: float
    gpu_hours_saved: float
    """Validation GPU-hours that passes k+1..N consumed and a k-pass policy would not have."""
    value_of_pass: int
    """Attempts whose first failure was at pass k: failures only pass k caught."""
    value_share: float
    gpu_hours_per_extra_admitted: float | None
    """GPU-hours saved per extra (likely bad) node let in: the price of the risk taken."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_table(outcomes: Sequence[AttemptOutcome], pass_gpu_hours: Mapping[int, float]) -> list[ThresholdRow]:
    """One row per k = 1..N (N the most passes any attempt required); empty without completed attempts."""
    if not outcomes:
        return []
    return threshold_from_counts(
        OutcomeCounts(
            passes_required=max(o.passes_required for o in outcomes),
            first_failures=Counter(o.first_failed_pass for o in outcomes if o.first_failed_pass is not None),
            admitted_at_n=sum(1 for o in outcomes if o.first_failed_pass is None),
            rebanned_at_n=sum(1 for o in outcomes if o.first_failed_pass is None and o.rebanned),
        ),
        pass_gpu_hours,
    )


@dataclass(frozen=True)
class OutcomeCounts:
    """Completed full-suite attempts counted the way storage can count them (GROUP BY first failing pass)."""

    passes_required: int
    """N: the most passes any attempt required."""
    first_failures: Mapping[int, int]
    """Pass number j -> attempts whose first failure was at j."""
    admitted_at_n: int
    rebanned_at_n: int

    @property
    def attempts(self) -> int:
        return self.admitted_at_n + sum(self.first_failures.values())


def threshold_from_counts(counts: OutcomeCounts, pass_gpu_hours: Mapping[int, float]) -> list[ThresholdRow]:
    """The table from counts alone, so a million pass records never need to leave the database."""
    if not counts.attempts:
        return []
    n = counts.passes_required
    first_failures = counts.first_failures
    admitted_at_n = counts.admitted_at_n
    rebanned_at_n = counts.rebanned_at_n
    reban_rate = rebanned_at_n / admitted_at_n if admitted_at_n else 0.0
    total = counts.attempts
    rows: list[ThresholdRow] = []
    extra = sum(first_failures.values())  # failures after pass 0
    for k in range(1, n + 1):
        extra -= first_failures.get(k, 0)
        saved = sum(hours for p, hours in pass_gpu_hours.items() if p > k)
        admitted = admitted_at_n + extra
        bad = extra + rebanned_at_n
        rows.append(
            ThresholdRow(
                k=k,
                attempts=total,
                admitted=admitted,
                extra_admitted=extra,
                extra_share=extra / admitted if admitted else 0.0,
                admitted_at_n=admitted_at_n,
                rebanned_at_n=rebanned_at_n,
                reban_rate_at_n=reban_rate,
                expected_bad_admitted=bad,
                expected_bad_share=bad / admitted if admitted else 0.0,
                gpu_hours_saved=saved,
                value_of_pass=first_failures.get(k, 0),
                value_share=first_failures.get(k, 0) / total,
                gpu_hours_per_extra_admitted=(saved / extra) if extra else None,
            )
        )
    return rows
