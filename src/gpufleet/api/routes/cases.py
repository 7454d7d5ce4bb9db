"""Remediation cases over HTTP: the fleet-wide view, one case with its steps and evidence, and a person's decision."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gpufleet.api.auth import Operator, TenantViewer
from gpufleet.api.deps import Db
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH, problems
from gpufleet.api.schemas.cases import CaseDetailOut, CaseLifecycleOut, CaseOut, SupplierReturnOut
from gpufleet.domain.remediation import (
    CASE_STATE_POLICIES,
    CASE_TRANSITIONS,
    FINAL_CASE_STATES,
    PERSON_ACTIONS,
    automation_events,
    person_actions,
)
from gpufleet.remediation.cases import act_on_case, list_cases, return_from_supplier, show_case

router = APIRouter(prefix="/cases", tags=["remediation"], responses=AUTH)
NO_CASE = (404, "No such case (or not one of the token's tenant's nodes)")
RACE = (412, "The node changed while the action was applied: look again and retry")

PersonAction = StrEnum("PersonAction", [(name, name) for name in PERSON_ACTIONS])  # type: ignore[misc]
"""What a person may ask of a case, in the domain table's order (gpufleet.domain.remediation.PERSON_ACTIONS)."""


def _actions_doc() -> str:
    return "; ".join(f"{name}: {t.doc} ({t.target.value})" for name, t in PERSON_ACTIONS.items()) + "."


class CaseActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    action: PersonAction = Field(description=_actions_doc())
    reason: str = Field(min_length=1, max_length=2000, description="Why: recorded on the case.")
    hardware_change: bool = Field(
        default=True, description="For repaired: did the repair change hardware (then the slow path)?"
    )


class SupplierReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    node: str = Field(min_length=1, max_length=255, description="Chassis id, serial or hostname.")
    reason: str = Field(min_length=1, max_length=2000, description="What the supplier did.")


@router.get(
    "",
    response_model=list[CaseOut],
    summary="Cases newest first: each with its node, state, action, kind and owner",
    responses=problems((404, "No such node"), 422),
)
def get_cases(
    actor: TenantViewer,
    db: Db,
    state: Annotated[str | None, Query(max_length=20, description="Only cases in this state.")] = None,
    cluster: Annotated[str | None, Query(max_length=100)] = None,
    node: Annotated[str | None, Query(max_length=255, description="Chassis id, serial or hostname.")] = None,
    open_only: Annotated[bool, Query(alias="open", description="Only cases still open.")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> ValueJSONResponse:
    """A tenant-scoped token sees only cases of nodes allocated to its tenant."""
    return ValueJSONResponse(list_cases(db, actor, state, cluster, node, open_only, limit))


@router.get(
    "/lifecycle",
    response_model=CaseLifecycleOut,
    summary="The case state machine: each state's owner and work, what automation and a person may do from it",
)
def get_case_lifecycle(actor: TenantViewer) -> ValueJSONResponse:
    states = [
        {
            "name": state.value,
            "owner": policy.owner,
            "work": policy.doc,
            "final": state in FINAL_CASE_STATES,
            "automation_events": automation_events(state),
            "person_actions": person_actions(state),
        }
        for state, policy in CASE_STATE_POLICIES.items()
    ]
    transitions = [
        {"from": t.source.value, "event": t.event, "to": t.target.value, "why": t.doc, "person_action": t.person}
        for t in CASE_TRANSITIONS
    ]
    return ValueJSONResponse({"states": states, "transitions": transitions})


@router.get(
    "/{case_id}",
    response_model=CaseDetailOut,
    summary="One case: its steps (who or what, when), evidence, reboots and ticket",
    responses=problems(NO_CASE, 422),
)
def get_case(case_id: int, actor: TenantViewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(show_case(db, actor, case_id))


@router.post(
    "/{case_id}/actions",
    response_model=CaseDetailOut,
    summary="A person's decision on a case, with a reason: the case as it is afterwards",
    responses=problems(
        NO_CASE,
        (409, "The case is closed, or the node is not where the action needs it"),
        RACE,
        413,
        422,
    ),
)
def post_action(case_id: int, body: CaseActionIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(act_on_case(db, actor, case_id, body.action.value, body.reason, body.hardware_change))


@router.post(
    "/supplier-returned",
    response_model=SupplierReturnOut,
    summary="The supplier returned a node: it validates and its case carries on",
    responses=problems(
        (404, "No such node"),
        (409, "The node is not awaiting its supplier"),
        RACE,
        413,
        422,
    ),
)
def post_supplier_returned(body: SupplierReturnIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(return_from_supplier(db, actor, body.node, body.reason))
