"""How much of the fleet automation may take out at once, and when it must stop on its own.

Budgets cap the nodes automation holds out of service per cluster and per NVLink domain (every tray of an NVL72 rack
shares one fabric, so losing several at once costs the whole domain). The circuit breaker trips when cases arrive
faster than faults plausibly do, which is what a bad rollout, a broken health check or a fabric-wide event looks
like: automation then stops taking nodes out until a person resets it with a reason. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpufleet.domain.settings import Settings


def budget_limit(fraction: float, minimum: int, size: int) -> int:
    """Nodes a budget allows at once in a group of ``size``: the fraction, but never under the minimum."""
    return max(0, min(size, max(minimum, math.floor(fraction * size))))


@dataclass(frozen=True)
class BudgetCheck:
    allowed: bool
    scope: str
    active: int
    limit: int
    size: int
    whole_cluster: bool = False
    """The cluster's own budget refused: no node of the cluster may be taken out, whatever its NVLink domain."""

    @property
    def reason(self) -> str:
        return (
            f"{self.scope}: {self.active} of {self.size} node(s) already held by automation; the budget allows "
            f"{self.limit} at once"
        )


def check_budgets(
    settings: Settings,
    cluster: str,
    cluster_size: int,
    cluster_active: int,
    domain: str | None = None,
    domain_size: int = 0,
    domain_active: int = 0,
) -> BudgetCheck:
    """Whether one more node may be taken out; the first budget that refuses is named."""
    limit = budget_limit(settings.cluster_budget_fraction, settings.cluster_budget_min, cluster_size)
    if cluster_active + 1 > limit:
        return BudgetCheck(False, f"cluster {cluster}", cluster_active, limit, cluster_size, whole_cluster=True)
    if domain is not None and domain_size > 0:
        dlimit = budget_limit(settings.nvlink_budget_fraction, settings.nvlink_budget_min, domain_size)
        if domain_active + 1 > dlimit:
            return BudgetCheck(False, f"NVLink domain {domain}", domain_active, dlimit, domain_size)
    return BudgetCheck(True, f"cluster {cluster}", cluster_active, limit, cluster_size)


def breaker_threshold(settings: Settings, cluster_size: int) -> int:
    return max(settings.breaker_min, math.ceil(settings.breaker_fraction * cluster_size))


def breaker_trip_reason(settings: Settings, cluster: str, cluster_size: int, opened_in_window: int) -> str | None:
    """Why the breaker should trip now, or ``None``: cases opened within the window reached the threshold."""
    threshold = breaker_threshold(settings, cluster_size)
    if opened_in_window < threshold:
        return None
    return (
        f"{opened_in_window} case(s) opened in cluster {cluster} within {settings.breaker_window_minutes} min "
        f"(threshold {threshold} of {cluster_size} nodes): automation stopped until a person resets the breaker"
    )
