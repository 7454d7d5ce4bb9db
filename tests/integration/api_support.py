"""A test client on the real API app over the ``db`` fixture, with one token per role and a small node fleet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from gpufleet.api.app import create_app
from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.fleet.tokens import create_token
from gpufleet.platform.database import Database
from tests.factories import ADMIN, OPERATOR, seed_reference

# 12 nodes: 8 H100 in east-frontier (acme-cloud), 4 GB300 in west-fleet (bolt-hw). SN01, SN02 are tenant-a's,
# SN09 is tenant-b's. Every node has a pool label; SN01..SN04 are also tier=gold.
HEADER = "supplier,serial,hostname,sku,cluster,rack,nvlink_domain,labels,gpu_serials,state,tenant"


def _row(i: int) -> str:
    east = i <= 8
    supplier, cluster, sku, gpus = (
        ("acme-cloud", "east-frontier", "H100-SXM-80GB", 8) if east else ("bolt-hw", "west-fleet", "GB300-NVL72", 4)
    )
    labels = f"pool={'a' if i % 2 else 'b'}" + (";tier=gold" if i <= 4 else "")
    serials = ";".join(f"G{i:02d}-{g}" for g in range(gpus))
    state = "in_service" if i in (1, 2, 3, 4, 9, 10) else "received"
    tenant = {1: "tenant-a", 2: "tenant-a", 9: "tenant-b"}.get(i, "")
    place = f"r{(i - 1) // 4},nvl-{(i - 1) // 6}"
    return f"{supplier},SN{i:02d},gpu-{i:02d},{sku},{cluster},{place},{labels},{serials},{state},{tenant}"


NODES_CSV = "\n".join([HEADER, *(_row(i) for i in range(1, 13))]) + "\n"


def node_id(serial: str) -> str:
    supplier = "acme-cloud" if int(serial[2:]) <= 8 else "bolt-hw"
    return chassis_id(supplier, serial)


@dataclass
class Api:
    db: Database
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **headers}

    def get(self, path: str, who: str = "viewer", **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.auth(who, **kwargs.pop("headers", {})), **kwargs)

    def post(self, path: str, who: str = "operator", **kwargs: Any) -> Any:
        return self.client.post(path, headers=self.auth(who, **kwargs.pop("headers", {})), **kwargs)

    def patch(self, path: str, who: str = "operator", **kwargs: Any) -> Any:
        return self.client.patch(path, headers=self.auth(who, **kwargs.pop("headers", {})), **kwargs)

    def delete(self, path: str, who: str = "operator", **kwargs: Any) -> Any:
        return self.client.delete(path, headers=self.auth(who, **kwargs.pop("headers", {})), **kwargs)


def make_api(db: Database, with_nodes: bool = True) -> Api:
    seed_reference(db)
    if with_nodes:
        report = import_nodes(db, NODES_CSV, "fleet.csv", OPERATOR)
        assert report.applied and report.created == 12, report.as_dict()
    api = Api(db, TestClient(create_app(db)))
    for who, role, tenant in (
        ("viewer", "viewer", None),
        ("operator", "operator", None),
        ("admin", "admin", None),
        ("tenant-a", "viewer", "tenant-a"),
        ("tenant-a-admin", "admin", "tenant-a"),
    ):
        api.tokens[who] = create_token(db, who, role, ADMIN, tenant).secret
    return api


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for member in ("type", "title", "detail", "instance"):
        assert isinstance(body[member], str) and body[member], (member, body)
    return body
