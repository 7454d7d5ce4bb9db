"""The fleet summary: nodes and GPUs by state, cluster, supplier and SKU."""

from __future__ import annotations

from fastapi import APIRouter

from gpufleet.api.auth import TenantViewer
from gpufleet.api.deps import Db
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH
from gpufleet.api.schemas.nodes import SummaryOut
from gpufleet.fleet.queries import fleet_summary

router = APIRouter(tags=["fleet"], responses=AUTH)


@router.get(
    "/summary", response_model=SummaryOut, summary="Counts of nodes and GPUs by state x cluster x supplier x SKU"
)
def get_summary(actor: TenantViewer, db: Db) -> ValueJSONResponse:
    """A tenant-scoped token gets the same shape, counting only its tenant's nodes."""
    with db.reader() as session:
        return ValueJSONResponse(fleet_summary(session, actor, db.clock.now()))
