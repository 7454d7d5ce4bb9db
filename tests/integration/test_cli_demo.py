"""The demo fleet and `gpufleet demo`: a realistic spread, loaded only into an empty database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select

from gpufleet.adapters.db.models import Allocation, Tenant
from gpufleet.cli.main import app
from gpufleet.domain.lifecycle import NodeState
from gpufleet.fleet.demo import demo_inventory, seed_demo_fleet
from gpufleet.fleet.queries import NodeFilter, iter_nodes
from gpufleet.fleet.reference import list_reference
from gpufleet.fleet.tokens import authenticate
from gpufleet.platform.context import Role
from gpufleet.platform.database import Database
from tests.factories import ADMIN, seed_reference
from tests.integration.cli_support import RUNNER, Cli, one_line_error


def test_demo_fleet_is_a_realistic_spread(db: Database) -> None:
    seeded = seed_demo_fleet(db, ADMIN)
    assert seeded is not None and seeded.nodes.ok and seeded.nodes.created == 200
    assert len(list_reference(db, "suppliers")) == 3
    clusters = list_reference(db, "clusters")
    assert len(clusters) == 4
    assert len({c["kind"] for c in clusters}) == 4 and {c["role"] for c in clusters} == {"frontier", "fleet"}
    assert all(c["stack"] for c in clusters)
    assert {s["name"] for s in list_reference(db, "skus")} >= {"GB300-NVL72"}
    nodes = iter_nodes(db, ADMIN, NodeFilter())
    states = Counter(n["state"] for n in nodes)
    assert set(states) == {s.value for s in NodeState}
    assert states["in_service"] > len(nodes) / 2
    domains = Counter(n["nvlink_domain"] for n in nodes if n["nvlink_domain"])
    assert sorted(domains.values()) == [18, 18, 18]  # 18 trays x 4 GPUs = NVL72
    assert all(n["rack"] for n in nodes)
    with db.reader() as session:
        tenants = session.execute(
            select(Tenant.name, func.count()).join(Allocation, Allocation.tenant_id == Tenant.id).group_by(Tenant.name)
        ).all()
    assert {name for name, count in tenants if count > 0} == {"orbital-ai", "quanta-labs"}


def test_demo_fleet_is_the_same_every_time() -> None:
    assert demo_inventory() == demo_inventory()


def test_demo_fleet_never_touches_a_database_with_data(db: Database) -> None:
    seed_reference(db)
    assert seed_demo_fleet(db, ADMIN) is None
    assert iter_nodes(db, ADMIN, NodeFilter()) == []


def test_demo_command_seeds_makes_a_token_and_serves(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli.on(db, monkeypatch)
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    result = cli("demo", "--host", "127.0.0.1", "--port", "8123")
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/docs" in result.stdout
    assert served["app"] == "gpufleet.api.app:create_app" and served["factory"] is True
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    secret = next(word for word in result.stdout.split() if word.startswith("gf_"))
    actor = authenticate(db, secret)
    assert actor is not None and actor.role is Role.ADMIN and "demo-admin" in actor.name
    assert cli.json("summary")["nodes"] == 200
    again = cli("demo")
    assert again.exit_code == 0 and "already holds a fleet" in again.stdout
    assert cli.json("summary")["nodes"] == 200


def test_serve_refuses_an_unmigrated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not serve"))
    result = RUNNER.invoke(app, ["--database-url", f"sqlite:///{tmp_path}/none.db", "serve"])
    assert "gpufleet db upgrade" in one_line_error(result)


def test_serve_passes_its_workers_and_access_log_to_uvicorn(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli.on(db, monkeypatch)
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    assert cli("serve").exit_code == 0
    assert (served["workers"], served["access_log"]) == (1, True)
    result = cli("serve", "--workers", "3", "--no-access-log", "--port", "8124")
    assert result.exit_code == 0, result.output
    assert (served["workers"], served["access_log"], served["port"]) == (3, False, 8124)
    refused = cli("serve", "--workers", "0")
    assert refused.exit_code != 0 and "--workers" in refused.output
