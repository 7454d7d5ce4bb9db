"""The failure model against the paper it is calibrated on: the Llama 3 fleet over its 54 days.

Runs on SQLite in memory only (five full runs); the PostgreSQL path of the same engine is covered by test_sim_run.
"""

from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Any

import pytest

from gpufleet.sim.calibration import load_calibration
from gpufleet.sim.engine import simulate
from gpufleet.sim.scenario import load_scenario

SEEDS = (1, 2, 3, 4, 5)
PAPER_TOTAL = 419


@pytest.fixture(scope="module")
def runs() -> list[dict[str, Any]]:
    scenario = load_scenario("llama3")
    assert scenario.duration_days == 54
    return [simulate(scenario, seed=seed) for seed in SEEDS]


@pytest.mark.slow
def test_the_mean_of_unexpected_interruptions_is_within_15_percent_of_419(runs: list[dict[str, Any]]) -> None:
    mean = fmean(r["interruptions_total"] for r in runs)
    assert abs(mean - PAPER_TOTAL) <= 0.15 * PAPER_TOTAL, mean


@pytest.mark.slow
def test_each_component_categorys_share_is_within_5_points(runs: list[dict[str, Any]]) -> None:
    paper = load_calibration("llama3").share_by_category()
    pooled: Counter[str] = Counter()
    for r in runs:
        pooled.update(r["interruptions_by_category"])
    total = sum(pooled.values())
    for category, share in paper.items():
        assert abs(pooled[category] / total - share) <= 0.05, (category, pooled[category] / total, share)


@pytest.mark.slow
def test_each_components_share_is_within_5_points(runs: list[dict[str, Any]]) -> None:
    paper = {c.name: c.count / PAPER_TOTAL for c in load_calibration("llama3").components}
    pooled: Counter[str] = Counter()
    for r in runs:
        pooled.update(r["interruptions"])
    total = sum(pooled.values())
    for name, share in paper.items():
        assert abs(pooled[name] / total - share) <= 0.05, (name, pooled[name] / total, share)


@pytest.mark.slow
def test_the_hardware_share_is_within_5_points_of_78_percent(runs: list[dict[str, Any]]) -> None:
    hardware = sum(r["interruptions_by_kind"].get("hardware", 0) for r in runs)
    total = sum(r["interruptions_total"] for r in runs)
    assert abs(hardware / total - 0.78) <= 0.05
    for r in runs:
        assert abs(r["hardware_share"] - 0.78) <= 0.08


@pytest.mark.slow
def test_training_keeps_about_90_percent_of_its_time(runs: list[dict[str, Any]]) -> None:
    """The paper reports more than 90% effective training time; lost work is what checkpoints do not save."""
    for r in runs:
        lost = r["jobs"]["gpu_hours_lost"] / (r["gpus"] * r["simulated_days"] * 24)
        assert 0.0 < lost < 0.15
