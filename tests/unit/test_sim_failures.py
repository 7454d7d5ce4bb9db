"""The failure model: rates derived from the published counts, scaled per supplier and SKU, repeatable per seed."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime

import pytest

from gpufleet.adapters.drivers.base import RepairAction
from gpufleet.sim.calibration import DATA_DIR, load_calibration
from gpufleet.sim.failures import DAY, FailureModel
from gpufleet.sim.scenario import parse_scenario

SCENARIO = """\
name: model
duration_days: 10
fleet:
  suppliers:
    - {name: good, kind: vendor}
    - {name: bad, kind: cloud}
  skus:
    - {name: H100, gpu_vendor: nvidia, gpu_model: H100, gpus_per_node: 8, gpu_memory_gb: 80}
    - {name: GB300, gpu_vendor: nvidia, gpu_model: GB300, gpus_per_node: 4, gpu_memory_gb: 288}
  clusters:
    - {name: c1, supplier: good, kind: slurm, role: frontier, nodes: [{sku: H100, count: 2}, {sku: GB300, count: 2}]}
    - {name: c2, supplier: bad, kind: kubernetes, role: fleet, nodes: [{sku: H100, count: 2}]}
failures:
  suppliers:
    bad: {hardware_factor: 2.0, reban: 0.3, validation_failure: 0.2, rma_days: {next_day_share: 0, min: 3, max: 5}}
    good: {reban: 0.01}
  skus:
    GB300: {reban: 0.15}
"""


def model(seed: int = 1) -> FailureModel:
    return FailureModel(parse_scenario(SCENARIO), seed)


def test_the_calibration_is_read_from_the_shipped_data_file_with_its_source() -> None:
    raw = json.loads((DATA_DIR / "llama3-interruptions.json").read_text())
    cal = load_calibration("llama3")
    assert cal.source == raw["source"] and "2407.21783" in cal.source
    assert cal.total == raw["unexpected_interruptions"] == 419
    assert cal.hardware_share == pytest.approx(324 / 419)
    hours = raw["window_days"] * 24
    gpu = next(c for c in cal.components if c.name == "Faulty GPU")
    assert gpu.per_gpu and gpu.rate_per_hour == pytest.approx(148 / (16384 * hours))
    nic = next(c for c in cal.components if c.name == "NIC")
    assert not nic.per_gpu and nic.rate_per_hour == pytest.approx(7 / (2048 * hours))


def test_an_8_gpu_node_at_factor_one_fails_at_the_papers_rate() -> None:
    cls = model().node_class("good", "H100")
    per_node_hour = 419 / (2048 * 54 * 24)
    assert cls.rate_per_second * 3600 == pytest.approx(per_node_hour)


def test_supplier_factors_scale_hardware_only() -> None:
    m = model()
    good, bad = m.node_class("good", "H100"), m.node_class("bad", "H100")
    cal = m.calibration
    hardware = sum(c.count for c in cal.components if c.kind == "hardware")
    software = cal.total - hardware
    assert bad.rate_per_second / good.rate_per_second == pytest.approx((2 * hardware + software) / cal.total)


def test_a_4_gpu_tray_sees_half_the_gpu_faults() -> None:
    m = model()
    tray, node = m.node_class("good", "GB300"), m.node_class("good", "H100")
    gpu = sum(c.count for c in m.calibration.components if c.per_gpu)
    expected = (m.calibration.total - gpu / 2) / m.calibration.total
    assert tray.rate_per_second / node.rate_per_second == pytest.approx(expected)


def test_components_are_drawn_in_proportion_to_the_published_counts() -> None:
    m = model(seed=5)
    cls = m.node_class("good", "H100")
    drawn = Counter(m.draw_component(cls).name for _ in range(20000))
    assert drawn["Faulty GPU"] / 20000 == pytest.approx(148 / 419, abs=0.015)
    assert drawn["Software Bug"] / 20000 == pytest.approx(54 / 419, abs=0.01)
    hardware_only = Counter(m.draw_component(cls, hardware_only=True).kind for _ in range(2000))
    assert set(hardware_only) == {"hardware"}


def test_software_faults_are_fixed_in_minutes_and_hardware_goes_in_house_or_to_the_supplier() -> None:
    m = model(seed=2)
    cal = m.calibration
    now = datetime(2026, 1, 1, tzinfo=UTC)
    bug = next(c for c in cal.components if c.name == "Software Bug")
    minutes = [m.make_fault(bug, now).repair_seconds / 60 for _ in range(500)]
    assert 5 < sorted(minutes)[250] < 40
    gpu = next(c for c in cal.components if c.name == "Faulty GPU")
    actions = Counter(m.make_fault(gpu, now).action for _ in range(1000))
    assert set(actions) == {RepairAction.RESET, RepairAction.RMA}
    assert actions[RepairAction.RESET] / 1000 == pytest.approx(0.3, abs=0.05)
    psu = next(c for c in cal.components if c.name == "Power Supply")
    assert m.make_fault(psu, now).unreachable


def test_rma_turnaround_follows_the_suppliers_terms() -> None:
    m = model(seed=3)
    bad = m.node_class("bad", "H100")
    days = [m.rma_seconds(bad) / DAY for _ in range(500)]
    assert all(3 <= d <= 5 for d in days)
    good = m.node_class("good", "H100")
    days = [m.rma_seconds(good) / DAY for _ in range(2000)]
    next_day = sum(d < 1.5 for d in days) / len(days)
    assert next_day == pytest.approx(0.25, abs=0.04)
    assert max(days) <= 14


def test_reban_propensity_combines_supplier_and_sku_and_falls_in_the_window() -> None:
    m = model(seed=4)
    assert m.node_class("bad", "H100").reban == pytest.approx(0.3)
    assert m.node_class("good", "GB300").reban == pytest.approx(1 - 0.99 * 0.85)
    cls = m.node_class("bad", "H100")
    draws = [m.reban_after_seconds(cls) for _ in range(4000)]
    hits = [d for d in draws if d is not None]
    assert len(hits) / len(draws) == pytest.approx(0.3, abs=0.03)
    assert all(0 <= d <= 7 * DAY for d in hits)


def test_the_same_seed_gives_the_same_draws() -> None:
    a, b, c = model(seed=9), model(seed=9), model(seed=10)
    cls_a, cls_b, cls_c = (x.node_class("good", "H100") for x in (a, b, c))
    first = [a.seconds_to_failure(cls_a) for _ in range(5)]
    assert first == [b.seconds_to_failure(cls_b) for _ in range(5)]
    assert first != [c.seconds_to_failure(cls_c) for _ in range(5)]


def test_no_failures_at_scale_zero() -> None:
    scenario = parse_scenario(SCENARIO + "  scale: 0\n")
    m = FailureModel(scenario, 1)
    assert m.seconds_to_failure(m.node_class("good", "H100")) == math.inf
