"""The lifecycle diagram, generated from the transition table so that it can never drift from the code."""

from __future__ import annotations

from gpufleet.domain.lifecycle import FINAL_STATES, STATE_POLICIES, TRANSITIONS, NodeState


def _label(event: str, guards: tuple[object, ...]) -> str:
    # Guards show as [condition] the way UML writes them, so a reader sees why an event can be refused.
    names = [getattr(g, "__name__", str(g)) for g in guards]
    return event + (f" [{', '.join(names)}]" if names else "")


def mermaid() -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {NodeState.RECEIVED.value}"]
    for t in TRANSITIONS:
        lines.append(f"    {t.source.value} --> {t.target.value}: {_label(t.event, t.guards)}")
    for state in FINAL_STATES:
        lines.append(f"    {state.value} --> [*]")
    for state, policy in STATE_POLICIES.items():
        limit = "no timer" if policy.time_limit is None else f"escalates after {policy.time_limit}"
        lines.append(f"    note right of {state.value}: owner {policy.owner}, {limit}")
    return "\n".join(lines) + "\n"


def dot() -> str:
    lines = [
        "digraph lifecycle {",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="sans"];',
    ]
    for state, policy in STATE_POLICIES.items():
        limit = "no timer" if policy.time_limit is None else f"limit {policy.time_limit}"
        shape = ", peripheries=2" if state in FINAL_STATES else ""
        lines.append(f'    {state.value} [label="{state.value}\\n{policy.owner}, {limit}"{shape}];')
    for t in TRANSITIONS:
        lines.append(f'    {t.source.value} -> {t.target.value} [label="{_label(t.event, t.guards)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
