"""Driver settings, the clusters command and API, and sync on the simulated driver, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from gpufleet.adapters.db.models import Cluster, NodeEvent
from gpufleet.clusters.drivers import DriverRegistry, set_cluster_driver
from gpufleet.clusters.sync import cluster_settings, sync_cluster, synced_clusters
from gpufleet.fleet.lifecycle import transition
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput
from gpufleet.remediation.policy import PolicyBook, set_override
from tests.factories import ADMIN, OPERATOR, seed_reference
from tests.fixtures.kubernetes_api import TOKEN, FakeApiServer
from tests.integration.api_support import make_api
from tests.integration.cli_support import Cli, one_line_error


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"token": "abc"}, "credentials are not stored"),
        ({"client_key_data": "LS0t"}, "credentials are not stored"),
        ({"kubeconfig": "relative/kubeconfig"}, "absolute path"),
        ({"kubeconfig": "apiVersion: v1\nkind: Config"}, "not file contents"),
        ({"kubeconfig": "/k", "in_cluster": True}, "not both"),
        ({"conf": "/etc/slurm/slurm.conf"}, "unknown setting"),
        ({"timeout_seconds": 0}, "from 1 to 600"),
    ],
)
def test_driver_settings_refuse_secrets_and_bad_values_naming_the_setting(
    db: Database, config: dict[str, object], message: str
) -> None:
    seed_reference(db)
    with pytest.raises(InvalidInput, match=message):
        set_cluster_driver(db, "west-fleet", "kubernetes", config, ADMIN)
    with db.reader() as session:
        assert session.execute(select(Cluster.driver).where(Cluster.name == "west-fleet")).scalar_one() == "simulated"


def test_only_an_admin_chooses_a_driver(db: Database) -> None:
    seed_reference(db)
    with pytest.raises(Forbidden):
        set_cluster_driver(db, "east-frontier", "slurm", {}, OPERATOR)
    target = set_cluster_driver(db, "east-frontier", "slurm", {"conf": "/etc/slurm/slurm.conf"}, ADMIN)
    assert target.driver == "slurm" and synced_clusters(db) == ["east-frontier"]


def test_sync_on_the_simulated_driver_holds_quarantined_nodes_and_records_once(db: Database) -> None:
    api = make_api(db)
    transition(db, "gpu-03", "quarantine", "xid 79", OPERATOR)
    registry = DriverRegistry(db.clock)
    first = sync_cluster(db, "east-frontier", OPERATOR, registry)
    assert [(a["node"], a["action"]) for a in first.actions] == [("gpu-03", "cordon")]
    assert first.nodes == 8 and len(first.observed) == 8
    again = sync_cluster(db, "east-frontier", OPERATOR, registry)
    assert not again.actions and [o["node"] for o in again.observed] == ["gpu-03"]  # now seen drained
    assert not sync_cluster(db, "east-frontier", OPERATOR, registry).observed
    with db.reader() as session:
        reason = session.execute(select(NodeEvent.reason).where(NodeEvent.kind == "driver_action")).scalar_one()
    assert reason.startswith("gpufleet[event:") and "xid 79" in reason
    api.client.close()


def test_the_clusters_command_sets_checks_and_syncs(
    db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seed_reference(db)
    cli = Cli.on(db, monkeypatch)
    server = FakeApiServer()
    server.fake.add_node("gpu-a")
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    try:
        done = cli.json("clusters", "set-driver", "west-fleet", "kubernetes", "--kubeconfig", str(kubeconfig))
        assert done["config"] == {"kubeconfig": str(kubeconfig)}
        seen = cli.json("clusters", "check", "west-fleet")
        assert seen["reachable"] and seen["nodes"] == 1 and seen["version"] == "v1.31.4"
        synced = cli.json("clusters", "sync", "west-fleet")
        assert synced["reachable"] and synced["unknown_to_gpufleet"] == ["gpu-a"]
        with db.reader() as session:
            stored = session.execute(select(Cluster.driver_config).where(Cluster.name == "west-fleet")).scalar_one()
        assert TOKEN not in str(stored)
    finally:
        server.stop()
    failed = cli("clusters", "check", "west-fleet")
    assert failed.exit_code == 1 and "NOT reachable" in failed.stdout
    assert "error:" in one_line_error(cli("clusters", "set-driver", "west-fleet", "kubernetes", "--set", "token=x"))


def test_the_clusters_api_checks_roles(db: Database) -> None:
    api = make_api(db)
    body = {"driver": "slurm", "config": {"conf": "/etc/slurm/slurm.conf"}}
    assert api.client.put("/api/v1/clusters/east-frontier/driver", json=body).status_code == 401
    assert (
        api.client.put("/api/v1/clusters/east-frontier/driver", json=body, headers=api.auth("operator")).status_code
        == 403
    )
    assert (
        api.client.put(
            "/api/v1/clusters/east-frontier/driver", json=body, headers=api.auth("tenant-a-admin")
        ).status_code
        == 403
    )
    secret = {"driver": "kubernetes", "config": {"token": "x"}}
    bad = api.client.put("/api/v1/clusters/west-fleet/driver", json=secret, headers=api.auth("admin"))
    assert bad.status_code == 422 and "credentials" in bad.json()["detail"]
    ok = api.client.put("/api/v1/clusters/east-frontier/driver", json=body, headers=api.auth("admin"))
    assert ok.status_code == 200 and ok.json()["driver"] == "slurm"
    assert api.post("/api/v1/clusters/west-fleet/sync", who="viewer").status_code == 403
    synced = api.post("/api/v1/clusters/west-fleet/sync", who="operator")
    assert synced.status_code == 200 and synced.json()["driver"] == "simulated"
    checked = api.get("/api/v1/clusters/west-fleet/check", who="viewer")
    assert checked.status_code == 200 and checked.json()["reachable"]
    assert api.get("/api/v1/clusters/west-fleet/check", who="tenant-a").status_code == 403


def test_a_cluster_setting_has_one_home_that_sync_and_remediation_both_read(db: Database) -> None:
    seed_reference(db)
    refused = pytest.raises(InvalidInput, match="is a cluster setting, not a driver setting")
    with refused as caught:
        set_cluster_driver(db, "east-frontier", "slurm", {"drain_deadline_minutes": 90}, ADMIN)
    assert caught.value.field == "clusters.east-frontier.driver_config.drain_deadline_minutes"
    defaults = cluster_settings(db, "east-frontier")
    assert (defaults.drain_deadline_minutes, defaults.reboot_timeout_minutes) == (60, 120)
    set_override(db, ADMIN, "setting:drain_deadline_minutes", 90, "fleet-wide", cluster=None)
    set_override(
        db, ADMIN, "setting:drain_deadline_minutes", 45, "this cluster's jobs checkpoint", cluster="east-frontier"
    )
    set_override(db, ADMIN, "setting:reboot_timeout_minutes", 30, "bare metal boots fast", cluster="east-frontier")
    set_override(db, ADMIN, "setting:reboot_timeout_minutes", 5, "one pool only", cluster="east-frontier", pool="p1")
    synced = cluster_settings(db, "east-frontier")
    assert (synced.drain_deadline_minutes, synced.reboot_timeout_minutes) == (45, 30)
    assert cluster_settings(db, "west-research").drain_deadline_minutes == 90  # only the fleet's override
    with db.reader() as session:
        cluster_id = session.execute(select(Cluster.id).where(Cluster.name == "east-frontier")).scalar_one()
        remediation = PolicyBook(session).get(cluster_id).settings
    assert remediation == synced
