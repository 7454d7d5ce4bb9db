"""Remediation cases over HTTP: the fleet-wide view, one case with its steps and evidence, and a person's decision."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gpufleet.api.auth import Operator, TenantViewer
from gpufleet.api.deps import Db
from gpufleet.api.schemas import PROBLEMS, problem
from gpufleet.remediation.cases import act_on_case, list_cases, return_from_supplier, show_case

router = APIRouter(prefix="/cases", tags=["remediation"], responses=PROBLEMS)


class CaseActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    action: Literal["repaired", "retry", "escalate", "close"] = Field(
        description="repaired: validation decides; retry: back to automation; escalate: to the supplier; close."
    )
    reason: str = Field(min_length=1, max_length=2000, description="Why: recorded on the case.")
    hardware_change: bool = Field(
        default=True, description="For repaired: did the repair change hardware (then the slow path)?"
    )


class SupplierReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    node: str = Field(min_length=1, max_length=255, description="Chassis id, serial or hostname.")
    reason: str = Field(min_length=1, max_length=2000, description="What the supplier did.")


@router.get("", summary="Cases newest first: each with its node, state, action, kind and owner")
def get_cases(
    actor: TenantViewer,
    db: Db,
    state: Annotated[str | None, Query(max_length=20, description="Only cases in this state.")] = None,
    cluster: Annotated[str | None, Query(max_length=100)] = None,
    node: Annotated[str | None, Query(max_length=255, description="Chassis id, serial or hostname.")] = None,
    open_only: Annotated[bool, Query(alias="open", description="Only cases still open.")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[dict[str, Any]]:
    """A tenant-scoped token sees only cases of nodes allocated to its tenant."""
    return list_cases(db, actor, state, cluster, node, open_only, limit)


@router.get("/{case_id}", summary="One case: its steps (who or what, when), evidence, reboots and ticket")
def get_case(case_id: int, actor: TenantViewer, db: Db) -> dict[str, Any]:
    return show_case(db, actor, case_id)


@router.post(
    "/{case_id}/actions",
    summary="A person's decision on a case, with a reason",
    responses={**problem(409, "The case is closed, or the node is not where the action needs it")},
)
def post_action(case_id: int, body: CaseActionIn, actor: Operator, db: Db) -> dict[str, Any]:
    return act_on_case(db, actor, case_id, body.action, body.reason, body.hardware_change)


@router.post("/supplier-returned", summary="The supplier returned a node: it validates and its case carries on")
def post_supplier_returned(body: SupplierReturnIn, actor: Operator, db: Db) -> dict[str, Any]:
    return return_from_supplier(db, actor, body.node, body.reason)
