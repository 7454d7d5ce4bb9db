"""Scenario files: the shipped ones describe the fleets the issue names, and bad files say file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.sim.scenario import ScenarioError, load_scenario, parse_scenario, shipped_scenarios

GOOD = """\
name: tiny
duration_days: 2
fleet:
  suppliers:
    - {name: acme, kind: cloud}
  skus:
    - {name: H100, gpu_vendor: nvidia, gpu_model: H100, gpus_per_node: 8, gpu_memory_gb: 80}
  clusters:
    - name: c1
      supplier: acme
      kind: slurm
      role: frontier
      nodes:
        - {sku: H100, count: 4}
"""


def error_of(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.yaml")
    return info.value


def test_shipped_scenarios_describe_the_fleets_of_the_issue() -> None:
    assert {"demo", "llama3", "fleet-100k"} <= set(shipped_scenarios())
    demo = load_scenario("demo")
    assert 1900 <= demo.nodes <= 2100
    assert len(demo.fleet.clusters) == 4
    assert len({c.supplier for c in demo.fleet.clusters}) == 3
    llama = load_scenario("llama3")
    assert (llama.nodes, llama.gpus, llama.duration_days) == (2048, 16384, 54)
    big = load_scenario("fleet-100k")
    assert (big.nodes, big.gpus) == (12500, 100000)


def test_a_good_scenario_parses_with_defaults() -> None:
    scenario = parse_scenario(GOOD)
    assert scenario.nodes == 4 and scenario.gpus == 32
    assert scenario.failures.calibration == "llama3"
    assert scenario.start.tzinfo is not None


def test_a_scenario_can_be_given_as_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert load_scenario(str(path)).name == "tiny"


def test_an_unknown_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"shipped: .*llama3"):
        load_scenario("no-such-scenario")


def test_broken_yaml_names_the_line() -> None:
    err = error_of(GOOD.replace("kind: slurm", "kind: [slurm"))
    assert err.line is not None and err.line >= 12
    assert str(err).startswith("bad.yaml, line")


def test_a_wrong_type_names_the_field_and_its_line() -> None:
    err = error_of(GOOD.replace("count: 4", "count: many"))
    assert err.field == "fleet.clusters[0].nodes[0].count"
    assert err.line == 14
    assert "line 14" in str(err) and "fleet.clusters[0].nodes[0].count" in str(err)


def test_an_unknown_field_is_refused_where_it_is() -> None:
    err = error_of(GOOD + "policies:\n  drain_deadline: 5\n")
    assert err.field == "policies.drain_deadline"
    assert err.line == 16


def test_a_reference_to_an_undeclared_supplier_names_it() -> None:
    err = error_of(GOOD.replace("supplier: acme", "supplier: nobody"))
    assert err.field == "fleet.clusters[0].supplier"
    assert err.line == 10
    assert "nobody" in str(err)


def test_failure_scaling_for_an_undeclared_sku_is_refused() -> None:
    err = error_of(GOOD + "failures:\n  skus:\n    B300: {reban: 0.2}\n")
    assert err.field == "failures.skus.B300"
    assert err.line == 17


def test_a_probability_above_one_is_refused() -> None:
    err = error_of(GOOD + "failures:\n  suppliers:\n    acme: {reban: 1.5}\n")
    assert err.field == "failures.suppliers.acme.reban"
    assert err.line == 17


def test_an_unknown_component_is_refused_with_the_known_ones() -> None:
    err = error_of(GOOD + "failures:\n  components:\n    Flux Capacitor: {factor: 2}\n")
    assert err.field == "failures.components.Flux Capacitor"
    assert "Faulty GPU" in str(err)


def test_a_bad_validation_policy_is_refused_by_the_products_own_rules() -> None:
    err = error_of(GOOD + "policies:\n  validation:\n    slow_path_suite: nonsense\n")
    assert err.field == "policies.validation.slow_path_suite"
    assert err.line == 17


def test_duplicate_names_are_refused() -> None:
    text = GOOD.replace(
        "    - {name: acme, kind: cloud}\n", "    - {name: acme, kind: cloud}\n    - {name: acme, kind: vendor}\n"
    )
    err = error_of(text)
    assert err.field == "fleet.suppliers[1].name"


def test_a_delivery_to_an_unknown_cluster_is_refused() -> None:
    err = error_of(GOOD + "deliveries:\n  - {day: 1, cluster: c9, sku: H100, count: 2}\n")
    assert err.field == "deliveries[0].cluster"
    assert err.line == 16


def test_a_start_without_a_time_zone_is_refused() -> None:
    err = error_of(GOOD + "start: 2026-01-01T00:00:00\n")
    assert err.field == "start"
