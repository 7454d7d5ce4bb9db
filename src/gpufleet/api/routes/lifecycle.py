"""The declared node lifecycle, read from the domain table so the API can never disagree with it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import Viewer
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH
from gpufleet.api.schemas.nodes import LifecycleOut
from gpufleet.domain.lifecycle import (
    CAPACITY_STATES,
    EVENTS,
    FINAL_STATES,
    STATE_POLICIES,
    TRANSITIONS,
    NodeState,
    allowed_events,
)

router = APIRouter(tags=["fleet"], responses=AUTH)


def _lifecycle() -> dict[str, Any]:
    states = []
    for state in NodeState:
        policy = STATE_POLICIES[state]
        limit = policy.time_limit
        states.append(
            {
                "name": state.value,
                "action": policy.action,
                "owner": policy.owner,
                "time_limit_seconds": int(limit.total_seconds()) if limit else None,
                "final": state in FINAL_STATES,
                "capacity": state in CAPACITY_STATES,
                "allowed_events": allowed_events(state),
            }
        )
    transitions = [
        {
            "from": t.source.value,
            "event": t.event,
            "to": t.target.value,
            "why": t.doc,
            "guards": [g.__name__ for g in t.guards],
        }
        for t in TRANSITIONS
    ]
    return {"states": states, "events": list(EVENTS), "transitions": transitions}


@router.get(
    "/lifecycle",
    response_model=LifecycleOut,
    summary="States with their action, owner and time limit; the transition table",
)
def get_lifecycle(actor: Viewer) -> ValueJSONResponse:
    return ValueJSONResponse(_lifecycle())
