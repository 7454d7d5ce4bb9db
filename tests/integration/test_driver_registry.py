"""The driver of a cluster comes from its row: simulated by default, named drivers when installed."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from gpufleet.adapters.db.models import Cluster
from gpufleet.adapters.drivers.base import ClusterDriver
from gpufleet.adapters.drivers.simulated import SimulatedDriver, SimulatedWorld
from gpufleet.clusters.drivers import ClusterTarget, DriverRegistry, driver_for_cluster
from gpufleet.platform.database import Database
from gpufleet.platform.errors import InvalidInput, NotFound
from tests.factories import seed_reference


def set_driver(db: Database, cluster: str, driver: str, config: dict[str, object] | None = None) -> None:
    with db.transaction() as session:
        session.execute(
            update(Cluster).where(Cluster.name == cluster).values(driver=driver, driver_config=config or {})
        )


def test_a_new_cluster_is_driven_by_the_simulated_driver(db: Database) -> None:
    seed_reference(db)
    driver = driver_for_cluster(db, "east-frontier", DriverRegistry(db.clock))
    assert isinstance(driver, SimulatedDriver) and isinstance(driver, ClusterDriver)
    assert driver.cluster == "east-frontier"
    driver.cordon("east-frontier-001", "test")
    assert not driver.node_status("east-frontier-001").schedulable


def test_a_cluster_keeps_its_driver_instance(db: Database) -> None:
    seed_reference(db)
    registry = DriverRegistry(db.clock)
    first = registry.for_cluster(db, "east-frontier")
    first.cordon("n1", "keep me")
    again = registry.for_cluster(db, "east-frontier")
    assert again is first and not again.node_status("n1").schedulable


def test_a_driver_that_is_not_installed_is_named_with_the_installed_ones(db: Database) -> None:
    seed_reference(db)
    set_driver(db, "west-fleet", "lsf")
    with pytest.raises(InvalidInput, match=r"names driver 'lsf'.*installed: kubernetes, simulated, slurm"):
        driver_for_cluster(db, "west-fleet", DriverRegistry(db.clock))


def test_a_registered_driver_is_used_for_clusters_that_name_it(db: Database) -> None:
    seed_reference(db)
    set_driver(db, "west-fleet", "slurm", {"controller": "slurmctld.west"})
    registry = DriverRegistry(db.clock)
    seen: list[ClusterTarget] = []

    def factory(target: ClusterTarget, clock: object) -> ClusterDriver:
        seen.append(target)
        return SimulatedDriver(SimulatedWorld(db.clock), target.name)

    registry.register("slurm", factory)
    assert "slurm" in registry.names()
    registry.for_cluster(db, "west-fleet")
    assert seen == [ClusterTarget("west-fleet", "kubernetes", "slurm", {"controller": "slurmctld.west"})]


def test_bad_simulated_settings_name_the_field(db: Database) -> None:
    seed_reference(db)
    set_driver(db, "west-fleet", "simulated", {"reboot_no_return": 3})
    with pytest.raises(InvalidInput, match="reboot_no_return"):
        driver_for_cluster(db, "west-fleet", DriverRegistry(db.clock))
    set_driver(db, "west-fleet", "simulated", {"colour": "blue"})
    with pytest.raises(InvalidInput, match="unknown setting"):
        driver_for_cluster(db, "west-fleet", DriverRegistry(db.clock))


def test_an_unknown_cluster_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        driver_for_cluster(db, "nowhere", DriverRegistry(db.clock))
