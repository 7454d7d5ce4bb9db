"""Who put a hold on a node: gpufleet, or someone else.

Slurm keeps one free-text reason per drained node and Kubernetes one ``unschedulable`` bit, and both are shared with
the cluster's own operators. gpufleet marks its own holds (a reason that starts with ``gpufleet[ref]``, an
annotation on a Kubernetes node) so that it can tell them apart from a hand-made drain, which it reports but never
lifts on its own: lifting someone else's hold needs an explicit override with a reason.
"""

from __future__ import annotations

import re

from gpufleet.adapters.drivers.base import DriverError

TAG = "gpufleet"
_TAGGED = re.compile(r"^gpufleet(?:\[(?P<ref>[^\]]*)\])?[: ]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
MAX_REASON = 250


def tag_reason(text: str, ref: str | None = None) -> str:
    """A reason gpufleet owns, carrying the case or maintenance it belongs to: ``gpufleet[case:12] xid 79``."""
    body = _UNSAFE.sub(" ", text).strip()
    if is_ours(body):
        return body[:MAX_REASON]
    clean_ref = _UNSAFE.sub("", ref or "").replace("]", ")").strip()
    prefix = f"{TAG}[{clean_ref}]" if clean_ref else TAG + ":"
    return f"{prefix} {body}"[:MAX_REASON]


def is_ours(reason: str | None) -> bool:
    return bool(reason) and _TAGGED.match(reason or "") is not None


def reason_ref(reason: str | None) -> str | None:
    """The case or maintenance id a gpufleet reason names, if any."""
    match = _TAGGED.match(reason or "")
    return match.group("ref") if match and match.group("ref") else None


class HeldByOthers(DriverError):
    """gpufleet was asked to lift a hold that someone else put on the node, without an override."""

    def __init__(self, node: str, reason: str | None, by: str | None) -> None:
        self.reason = reason
        self.by = by
        who = f" by {by}" if by else ""
        super().__init__(
            f"node '{node}' was taken out of service{who} outside gpufleet (reason: {reason or 'none given'}); "
            "gpufleet does not return it to service unless asked to override, with a reason",
            node=node,
        )
