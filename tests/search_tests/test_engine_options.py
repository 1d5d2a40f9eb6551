"""Options an engine cannot honour: one line, exit 2, before data is read or a study made."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from search.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "hyperband", "--workers", "2"], "--workers 2: --engine hyperband runs one"),
        (["--engine", "hyperband", "--time-budget", "10m"], "--time-budget: not supported"),
        (["--engine", "hyperband", "--factor", "1"], "--factor 1: expected an integer >= 2"),
        (["--engine", "hyperband", "--hyperband-iterations", "0"], "expected a positive integer"),
        (["--engine", "optuna", "--factor", "3"], "--factor: applies to --engine hyperband only"),
    ],
)
def test_engine_option_conflicts_exit_2_without_a_study(tmp_path, args, message):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # A data path that does not exist: the refusal must come before any data is read.
    result = CliRunner().invoke(
        app,
        ["run", "--study", "s", "--data", str(tmp_path / "missing.npz"), "--storage", url, *args],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    listed = CliRunner().invoke(app, ["studies", "--storage", url, "--format", "json"])
    assert listed.exit_code in (0, 2)
    if listed.exit_code == 0:
        assert json.loads(listed.stdout) == []
