"""Figure: ingest through an alert storm, with the remediation reaction on.

20,000 Alertmanager alerts of codes the policy acts on (application, memory and bus Xids) arrive as 200 webhooks of
100, across a 12,500-node fleet, one after another from one sender: within seconds every cluster's blast-radius budget
is spent. Reported: events/s over the whole storm and over its second half (once the budgets are spent), the cases
the reaction opened, the nodes it quarantined, and how long one controller pass then takes to open the held cases
for what the reaction left to it. No target is named for it; it shows that ingest keeps its pace while automation is
held back.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from _db import backend_arg, scratch_database
from _fleet import populate
from bench_health_ingest import ACTOR, alert_payloads, register_reactions, teach_pci
from gpufleet.adapters.db.models import HealthEvent, RemediationCase
from gpufleet.api.runtime import settle_process
from gpufleet.health.ingest import ingest
from gpufleet.remediation.react import engine_for
from gpufleet.remediation.runtime import DbWork

EVENTS = 20_000


def counts(session: Session) -> dict[str, int]:
    """Cases by what holds them; ``acting`` are those automation is moving (quarantined and on)."""
    rows = session.execute(select(RemediationCase.held, func.count()).group_by(RemediationCase.held)).all()
    held = {str(h): n for h, n in rows if h is not None}
    return {"cases": sum(n for _, n in rows), "acting": sum(n for h, n in rows if h is None), **held}


def main() -> None:
    args = backend_arg(__doc__ or "")
    with scratch_database(args.db) as db:
        fleet = populate(db)
        teach_pci(db)
        reactions = register_reactions(db)
        settle_process()
        payloads = alert_payloads(EVENTS, datetime.now(UTC) - timedelta(minutes=30), seed=11)
        marks = []
        start = time.perf_counter()
        for body in payloads:
            ingest(db, body, "alertmanager", ACTOR)
            marks.append(time.perf_counter() - start)
        seconds = marks[-1]
        half = len(payloads) // 2
        second_half = marks[-1] - marks[half - 1]
        with db.reader() as session:
            reacted = counts(session)
            left = session.execute(
                select(func.count()).where(HealthEvent.processed_at.is_(None), HealthEvent.node_id.is_not(None))
            ).scalar_one()
        engine = engine_for(db)
        passed = time.perf_counter()
        with DbWork(db) as work:
            report = engine.run_pass(work)
        pass_seconds = time.perf_counter() - passed
        with db.reader() as session:
            after = counts(session)
    print(
        json.dumps(
            {
                "figure": "ingest_storm",
                "db": args.db,
                "nodes": fleet.nodes,
                "reactions": reactions,
                "events": EVENTS,
                "webhooks": len(payloads),
                "seconds": round(seconds, 2),
                "events_per_s": round(EVENTS / seconds),
                "second_half_events_per_s": round(EVENTS / 2 / second_half),
                "reaction": reacted,
                "left_to_the_pass": left,
                "pass_seconds": round(pass_seconds, 2),
                "pass_opened": len(report.intake.opened),
                "after_the_pass": after,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
