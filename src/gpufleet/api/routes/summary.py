"""The fleet summary: nodes and GPUs by state, cluster, supplier and SKU."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import TenantViewer
from gpufleet.api.deps import Db
from gpufleet.api.schemas import PROBLEMS
from gpufleet.fleet.queries import fleet_summary

router = APIRouter(tags=["fleet"], responses=PROBLEMS)


@router.get("/summary", summary="Counts of nodes and GPUs by state x cluster x supplier x SKU")
def get_summary(actor: TenantViewer, db: Db) -> dict[str, Any]:
    """A tenant-scoped token gets the same shape, counting only its tenant's nodes."""
    with db.reader() as session:
        return fleet_summary(session, actor, db.clock.now())
