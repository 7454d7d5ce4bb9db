"""Running the real `gpufleet` command in-process against a test database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gpufleet.cli.main import app
from gpufleet.platform.database import Database

RUNNER = CliRunner()


@dataclass
class Cli:
    url: str

    @classmethod
    def on(cls, db: Database, monkeypatch: pytest.MonkeyPatch) -> Cli:
        url = db.engine.url.render_as_string(hide_password=False)
        monkeypatch.setenv("GPUFLEET_DATABASE_URL", url)
        monkeypatch.setenv("COLUMNS", "200")
        return cls(url)

    def __call__(self, *args: str) -> Result:
        return RUNNER.invoke(app, list(args), catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self(*args, "--output", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def one_line_error(result: Result) -> str:
    """The error a failed command printed, checked to be a single line with no traceback."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("error: ")
    return lines[0]
