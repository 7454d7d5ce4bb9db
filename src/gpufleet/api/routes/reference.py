"""Reference data: the fleet document (suppliers, clusters, SKUs, ...) in, and each section's list out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gpufleet.api.auth import Operator, Viewer
from gpufleet.api.deps import Db
from gpufleet.api.schemas import PROBLEMS, ItemsOut
from gpufleet.fleet.reference import FleetDocument, import_fleet, list_reference

router = APIRouter(tags=["reference"], responses=PROBLEMS)

SECTIONS = (
    "suppliers",
    "regions",
    "sites",
    "clusters",
    "skus",
    "racks",
    "nvlink-domains",
    "switches",
    "partitions",
    "pools",
    "tenants",
)


@router.post("/fleet", summary="Create or update reference data from a fleet document")
def post_fleet(
    document: FleetDocument,
    actor: Operator,
    db: Db,
    dry_run: Annotated[bool, Query(description="Report what would change and write nothing.")] = False,
) -> dict[str, Any]:
    """Idempotent: sending the same document again reports every item unchanged."""
    return import_fleet(db, document, actor, dry_run=dry_run).as_dict()


def _lister(section: str) -> Callable[..., dict[str, Any]]:
    name = section.replace("-", "_")

    def list_section(actor: Viewer, db: Db) -> dict[str, Any]:
        return {"items": list_reference(db, name)}

    list_section.__name__ = f"list_{name}"
    return list_section


for _section in SECTIONS:
    router.add_api_route(
        f"/{_section}",
        _lister(_section),
        methods=["GET"],
        response_model=ItemsOut,
        summary=f"List {_section.replace('-', ' ')}",
    )
