"""A cluster's settings: one model with one set of defaults, for every loop that acts on a cluster.

The defaults here are the only ones. The fleet, a cluster or a pool changes a setting with a policy override
(``gpufleet policy override --set``); remediation and cluster sync read the same values, so a drain deadline or a reboot
timeout means one thing wherever it is used. The reference table in docs is generated from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

DIAGNOSTIC_CHECKS = ("dcgm_r1", "dcgm_r2", "dcgm_r3", "dcgm_r4")


def _setting(default: Any, doc: str, unit: str = "") -> Any:
    return field(default=default, metadata={"doc": doc, "unit": unit})


@dataclass(frozen=True)
class Settings:
    """Safety limits and timings: what overrides per cluster or pool most often change."""

    dry_run: bool = _setting(False, "Decide and record what automation would do, but act on nothing.")
    cluster_budget_fraction: float = _setting(
        0.10, "At most this share of a cluster held out of service by automation at once.", "share"
    )
    cluster_budget_min: int = _setting(3, "... but always allow this many nodes (GKE repairs max(3, 10%)).", "nodes")
    nvlink_budget_fraction: float = _setting(
        0.25,
        "At most this share of one NVLink domain held out at once (an NVL72 rack's trays share one fabric).",
        "share",
    )
    nvlink_budget_min: int = _setting(1, "... but always allow this many trays of a domain.", "nodes")
    breaker_window_minutes: int = _setting(10, "The circuit breaker trips when, within this window, ...", "minutes")
    breaker_fraction: float = _setting(0.2, "... this share of a cluster's nodes got a case ...", "share")
    breaker_min: int = _setting(10, "... and never fewer cases than this.", "cases")
    drain_deadline_minutes: int = _setting(
        60, "A graceful drain ends the work still running after this (remediation and cluster sync).", "minutes"
    )
    reboot_timeout_minutes: int = _setting(
        120,
        "A reboot not back by then did not return (remediation and cluster sync; NVSentinel: bare metal ~30 min).",
        "minutes",
    )
    escalate_after_failures: int = _setting(
        3, "Cluster sync escalates an action the scheduler refused this many times in a row.", "attempts"
    )
    poll_seconds: int = _setting(120, "How often a running drain or reboot is looked at.", "seconds")
    stale_after_minutes: int = _setting(
        360, "Events observed longer ago than this are evidence only: they open no case.", "minutes"
    )
    supplier_days: int = _setting(14, "An RMA not back by then goes to a person.", "days")
    human_hours: int = _setting(24, "A case waiting for a person is raised again after this.", "hours")
    diagnostics_software: str = _setting(
        "dcgm_r1", f"Diagnostics for a software fault (seconds); one of {', '.join(DIAGNOSTIC_CHECKS)}.", "check"
    )
    diagnostics_hardware: str = _setting(
        "dcgm_r3", "Diagnostics for a hardware fault (~15 min: stress, power, memory bandwidth).", "check"
    )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Settings))


def setting_rows() -> list[dict[str, Any]]:
    """Each setting with its default, unit and meaning: the generated reference table's rows."""
    return [
        {"name": f.name, "default": f.default, "unit": f.metadata["unit"], "doc": f.metadata["doc"]}
        for f in fields(Settings)
    ]
