"""The reference pages in docs/reference are what the code generates now: a changed table fails here until the pages
are written again (`gpufleet docs write`)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gpufleet.cli.docs import pages
from gpufleet.cli.main import app
from gpufleet.domain.remediation import CASE_TRANSITIONS, PERSON_ACTIONS, CaseState, person_actions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"


def test_every_generated_page_in_docs_is_current() -> None:
    for name, text in pages().items():
        path = DOCS / name
        assert path.exists(), f"{path} is missing: run `gpufleet docs write`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is out of date: run `gpufleet docs write`"


def test_the_check_fails_on_a_stale_page_and_write_mends_it(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["docs", "write", "--dir", str(tmp_path)]).exit_code == 0
    page = tmp_path / "case-lifecycle.md"
    page.write_text(page.read_text() + "hand edit\n")
    stale = runner.invoke(app, ["docs", "write", "--dir", str(tmp_path), "--check"])
    assert stale.exit_code == 1 and "case-lifecycle.md" in stale.output
    assert runner.invoke(app, ["docs", "write", "--dir", str(tmp_path)]).exit_code == 0
    assert page.read_text() == pages()["case-lifecycle.md"]


def test_the_case_diagram_draws_every_transition_of_the_table() -> None:
    text = pages()["case-lifecycle.md"]
    for t in CASE_TRANSITIONS:
        arrow = f"    {t.source.value} --> {t.target.value}: "
        line = next((line for line in text.splitlines() if line.startswith(arrow)), None)
        assert line is not None and t.event in line, (t.source, t.event)


def test_person_actions_come_from_the_table_and_end_with_the_case() -> None:
    assert list(PERSON_ACTIONS) == ["repaired", "retry", "escalate", "close"]
    assert PERSON_ACTIONS["repaired"].target is CaseState.VALIDATING
    assert PERSON_ACTIONS["retry"].target is CaseState.DIAGNOSING
    assert person_actions(CaseState.NEEDS_HUMAN) == list(PERSON_ACTIONS)
    assert person_actions(CaseState.CLOSED) == [] and person_actions(CaseState.REINTEGRATED) == []


def test_cases_lifecycle_lists_each_state_with_what_automation_and_a_person_may_do() -> None:
    result = CliRunner().invoke(app, ["cases", "lifecycle", "--output", "json"])
    assert result.exit_code == 0, result.output
    states = {s["state"]: s for s in json.loads(result.output)}
    assert set(states) == {s.value for s in CaseState}
    assert "escalate" in states["diagnosing"]["events"] and "admit" in states["validating"]["events"]
    assert states["closed"]["person_actions"] == [] and states["needs_human"]["person_actions"] == list(PERSON_ACTIONS)
