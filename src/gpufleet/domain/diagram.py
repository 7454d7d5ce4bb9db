"""The lifecycle diagrams (nodes and remediation cases), generated from their transition tables so that they can
never drift from the code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpufleet.domain.lifecycle import FINAL_STATES, STATE_POLICIES, TRANSITIONS, NodeState
from gpufleet.domain.remediation import CASE_STATE_POLICIES, CASE_TRANSITIONS, FINAL_CASE_STATES, CaseState


@dataclass(frozen=True)
class _Machine:
    name: str
    initial: str
    edges: list[tuple[str, str, str]]
    finals: list[str]
    notes: dict[str, str]


def _label(event: str, guards: tuple[object, ...]) -> str:
    # Guards show as [condition] the way UML writes them, so a reader sees why an event can be refused.
    names = [getattr(g, "__name__", str(g)) for g in guards]
    return event + (f" [{', '.join(names)}]" if names else "")


def _merged(edges: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    # One arrow per pair of states, naming every event on it: "close" leaves all eight open case states, and eight
    # arrows of one label each would hide the rest of the machine.
    labels: dict[tuple[str, str], list[str]] = {}
    for source, target, label in edges:
        names = labels.setdefault((source, target), [])
        if label not in names:
            names.append(label)
    return [(s, t, ", ".join(names)) for (s, t), names in labels.items()]


def _nodes() -> _Machine:
    notes = {}
    for state, policy in STATE_POLICIES.items():
        limit = "no timer" if policy.time_limit is None else f"escalates after {policy.time_limit}"
        notes[state.value] = f"owner {policy.owner}, {limit}"
    return _Machine(
        "lifecycle",
        NodeState.RECEIVED.value,
        [(t.source.value, t.target.value, _label(t.event, t.guards)) for t in TRANSITIONS],
        [s.value for s in FINAL_STATES],
        notes,
    )


def _cases() -> _Machine:
    edges = []
    for t in CASE_TRANSITIONS:
        label = t.event if t.person is None else f"{t.event} (person: {t.person})"
        edges.append((t.source.value, t.target.value, label))
    return _Machine(
        "cases",
        CaseState.DETECTED.value,
        _merged(edges),
        [s.value for s in CaseState if s in FINAL_CASE_STATES],
        {s.value: f"owner {p.owner}: {p.doc}" for s, p in CASE_STATE_POLICIES.items()},
    )


def _mermaid(m: _Machine) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {m.initial}"]
    lines += [f"    {source} --> {target}: {label}" for source, target, label in m.edges]
    lines += [f"    {state} --> [*]" for state in m.finals]
    lines += [f"    note right of {state}: {note}" for state, note in m.notes.items()]
    return "\n".join(lines) + "\n"


def _dot(m: _Machine) -> str:
    lines = [f"digraph {m.name} {{", "    rankdir=LR;", '    node [shape=box, style=rounded, fontname="sans"];']
    for state, note in m.notes.items():
        shape = ", peripheries=2" if state in m.finals else ""
        lines.append(f'    {state} [label="{state}\\n{note}"{shape}];')
    lines += [f'    {source} -> {target} [label="{label}"];' for source, target, label in m.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid() -> str:
    """The node lifecycle as a Mermaid state diagram."""
    return _mermaid(_nodes())


def dot() -> str:
    """The node lifecycle as a Graphviz digraph."""
    return _dot(_nodes())


def case_mermaid() -> str:
    """The remediation case machine as a Mermaid state diagram."""
    return _mermaid(_cases())


def case_dot() -> str:
    """The remediation case machine as a Graphviz digraph."""
    return _dot(_cases())
