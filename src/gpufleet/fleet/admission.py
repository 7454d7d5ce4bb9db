"""The admission gate: has this node passed validation since it last entered validating?

Kept apart from the rest of validation so that the lifecycle service can ask it without importing the analytics.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import ValidationAttempt


def passed_validation(session: Session, node_id: str, cluster_id: int, since: datetime) -> bool:
    """True when the node's latest attempt passed, in the cluster it is in now, and finished at or after ``since``
    (when it entered validating). A later failing or unfinished attempt outweighs an earlier pass."""
    latest = session.execute(
        select(ValidationAttempt.status, ValidationAttempt.cluster_id, ValidationAttempt.finished_at)
        .where(ValidationAttempt.node_id == node_id)
        .order_by(ValidationAttempt.attempt.desc())
        .limit(1)
    ).one_or_none()
    return (
        latest is not None
        and latest.status == "passed"
        and latest.cluster_id == cluster_id
        and latest.finished_at >= since
    )
