"""The shipped policy variant shows the validation trade-off: fewer slow-path passes cost fewer GPU-hours."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gpufleet.cli.main import app


def _figures(scenario: str, tmp_path: Path) -> dict[str, object]:
    out = tmp_path / f"{scenario}.json"
    result = CliRunner().invoke(
        app, ["--database-url", "sqlite://", "simulate", scenario, "--days", "10", "--quiet", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(out.read_text()))


def test_six_passes_spend_fewer_validation_gpu_hours_than_twelve(tmp_path: Path) -> None:
    twelve = _figures("demo", tmp_path)
    six = _figures("demo-6-passes", tmp_path)
    assert float(six["validation_gpu_hours"]) < float(twelve["validation_gpu_hours"])  # type: ignore[arg-type]
    assert set(six["reban_rate_by_supplier"]) == set(twelve["reban_rate_by_supplier"])  # type: ignore[call-overload]
