"""Slurm and Kubernetes run no validation suites of their own: asking them to is a clear, final error."""

from __future__ import annotations

import pytest

from gpufleet.adapters.drivers.base import DriverError, ValidationSuite
from gpufleet.adapters.drivers.kubernetes import KubernetesDriver, KubernetesSettings
from gpufleet.adapters.drivers.slurm import SlurmDriver, SlurmSettings
from gpufleet.platform.clock import ManualClock


@pytest.mark.parametrize(
    ("driver", "name"),
    [
        (SlurmDriver("east", SlurmSettings(), ManualClock()), "Slurm"),
        (KubernetesDriver("west", KubernetesSettings(), ManualClock()), "Kubernetes"),
    ],
)
def test_a_scheduler_driver_points_to_validation_ingest(driver: SlurmDriver | KubernetesDriver, name: str) -> None:
    with pytest.raises(DriverError) as started:
        driver.start_validation("gpu-001", ValidationSuite(name="burn-in", checks=("dcgm-r3",)))
    assert f"the {name} driver does not run validation suites on '{driver.cluster}'" in str(started.value)
    assert "gpufleet validation ingest" in str(started.value)
    assert started.value.node == "gpu-001" and not started.value.retryable
    with pytest.raises(DriverError, match=f"the {name} driver keeps no validation runs \\(asked for r-1\\)"):
        driver.validation_result("gpu-001", "r-1")
