"""The admission gate: has this node passed validation since it last entered validating?

Kept apart from the rest of validation so that the lifecycle service can ask it without importing the analytics.
"""

from __future__ import annotations

from datetime import datetime

from gpufleet.fleet import store
from gpufleet.platform.database import UnitOfWork


def passed_validation(session: UnitOfWork, node_id: str, cluster_id: int, since: datetime) -> bool:
    """True when the node's latest attempt passed, in the cluster it is in now, and finished at or after ``since``
    (when it entered validating). A later failing or unfinished attempt outweighs an earlier pass."""
    latest = store.latest_validation(session, node_id)
    return (
        latest is not None
        and latest.status == "passed"
        and latest.cluster_id == cluster_id
        and latest.finished_at >= since
    )
