"""Reference data: the fleet document (suppliers, clusters, SKUs, ...) in, and each section's list out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query

from gpufleet.api.auth import Operator, Viewer
from gpufleet.api.deps import Db
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH, problems
from gpufleet.api.schemas.fleet import REFERENCE_LISTS, FleetReportOut
from gpufleet.fleet.reference import FleetDocument, import_fleet, list_reference

router = APIRouter(tags=["reference"], responses=AUTH)

SECTIONS = tuple(REFERENCE_LISTS)


@router.post(
    "/fleet",
    response_model=FleetReportOut,
    summary="Create or update reference data from a fleet document",
    responses=problems(413, (422, "The document is invalid, or names something unknown; `field` says where")),
)
def post_fleet(
    document: FleetDocument,
    actor: Operator,
    db: Db,
    dry_run: Annotated[bool, Query(description="Report what would change and write nothing.")] = False,
) -> ValueJSONResponse:
    """Idempotent: sending the same document again reports every item unchanged."""
    return ValueJSONResponse(import_fleet(db, document, actor, dry_run=dry_run).as_dict())


def _lister(section: str) -> Callable[..., ValueJSONResponse]:
    name = section.replace("-", "_")

    def list_section(actor: Viewer, db: Db) -> ValueJSONResponse:
        return ValueJSONResponse({"items": list_reference(db, name)})

    list_section.__name__ = f"list_{name}"
    return list_section


for _section, _model in REFERENCE_LISTS.items():
    router.add_api_route(
        f"/{_section}",
        _lister(_section),
        methods=["GET"],
        response_model=_model,
        summary=f"List {_section.replace('-', ' ')}",
    )
