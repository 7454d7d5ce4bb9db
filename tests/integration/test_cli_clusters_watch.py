"""`gpufleet clusters watch` runs the sync controller pass after pass and stops when told."""

from __future__ import annotations

import pytest

from gpufleet.platform.database import Database
from tests.factories import seed_reference
from tests.integration.cli_support import Cli


def test_watch_runs_the_requested_passes_and_reports_each_cluster(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_reference(db)
    cli = Cli.on(db, monkeypatch)
    result = cli("clusters", "watch", "--interval", "1", "--passes", "2")
    assert result.exit_code == 0, result.output
    passes = [line for line in result.output.splitlines() if line.startswith("pass ")]
    assert passes == [
        "pass 1: 0 cluster(s) with a scheduler driver synced",
        "pass 2: 0 cluster(s) with a scheduler driver synced",
    ], result.output
