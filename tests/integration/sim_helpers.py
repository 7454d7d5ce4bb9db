"""A small scenario that exercises every path of the simulated operations team in a few simulated days."""

from __future__ import annotations

from typing import Any

from gpufleet.sim.scenario import Scenario, parse_scenario

SMALL = """\
name: small
duration_days: 6
seed: 5
fleet:
  suppliers:
    - {name: good-vendor, kind: vendor}
    - {name: shaky-cloud, kind: cloud}
  skus:
    - {name: H100-SXM-80GB, gpu_vendor: nvidia, gpu_model: H100, gpus_per_node: 8, gpu_memory_gb: 80}
    - {name: GB300-NVL72, gpu_vendor: nvidia, gpu_model: GB300, gpus_per_node: 4, gpu_memory_gb: 288}
  clusters:
    - name: train
      supplier: good-vendor
      kind: slurm
      role: frontier
      nodes:
        - {sku: H100-SXM-80GB, count: 24, nodes_per_rack: 4}
      workload: {utilization: 1.0, job_hours: 24, job_nodes: 8}
    - name: shared
      supplier: shaky-cloud
      kind: kubernetes
      role: fleet
      nodes:
        - {sku: GB300-NVL72, count: 18, nvlink_domain_size: 9, nvlink_domain_kind: GB300-NVL72}
      workload: {utilization: 0.7, job_hours: 4, job_nodes: 2}
      tenants: [tenant-x, tenant-y]
deliveries:
  - {day: 1, cluster: shared, sku: GB300-NVL72, count: 6}
failures:
  scale: 60
  suppliers:
    shaky-cloud:
      hardware_factor: 2
      validation_failure: 0.4
      reban: 0.3
      rma_days: {next_day_share: 0.5, min: 1, max: 2}
  repair:
    reboot_no_return: 0.15
    rma_days: {next_day_share: 0.5, min: 1, max: 3}
policies:
  validation: {slow_path_passes: 2}
"""

TIMING = ("wall_seconds", "events_per_second", "setup_seconds")


def small() -> Scenario:
    return parse_scenario(SMALL, "small.yaml")


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """Results without the timings, which differ between two runs of the same seed."""
    return {k: v for k, v in results.items() if k not in TIMING}
