"""The study keeps the space it ran with: resuming uses it even after the file changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli import app

pytestmark = pytest.mark.slow

SPACE = """
name = "recorded"
[dimensions]
cell = "CELL"
units = { low = 4, high = 6 }
vocab_size = 500
maxlen = 20
embedding_dim = 4
batch_size = 32
"""


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_changed_space_is_refused_and_resume_uses_the_stored_one(tmp_path: Path, imdb_npz):
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace("CELL", "simple"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["--storage", url, "--quiet", "--format", "json"]
    first = invoke(
        "run", "--study", "rec", "--space", str(space), "--trials", "1", "--max-epochs", "1",
        "--data", str(imdb_npz), "--limit", "200", "--seed", "3", *common,
    )  # fmt: skip
    assert first.exit_code == 0, first.output

    space.write_text(SPACE.replace("CELL", "gru"))
    refused = invoke("run", "--study", "rec", "--space", str(space), "--add", "1", *common)
    assert refused.exit_code == 2
    assert len(refused.output.strip().splitlines()) == 1
    assert "differs from the space" in refused.output and "--allow-space-change" in refused.output

    resumed = invoke("resume", "rec", "--add", "1", *common)
    assert resumed.exit_code == 0, resumed.output
    trials = json.loads(invoke("trials", "rec", "--storage", url, "--format", "json").stdout)
    assert [t["config"]["cell"] for t in trials] == ["simple", "simple"]

    allowed = invoke(
        "run", "--study", "rec", "--space", str(space), "--add", "1", "--allow-space-change",
        *common,
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    trials = json.loads(invoke("trials", "rec", "--storage", url, "--format", "json").stdout)
    assert [t["config"]["cell"] for t in trials] == ["simple", "simple", "gru"]


def test_start_points_run_first(tmp_path: Path, imdb_npz):
    space = tmp_path / "space.toml"
    space.write_text(
        SPACE.replace('cell = "CELL"', 'cell = { choice = ["simple", "gru"] }')
        + '[[start]]\ncell = "gru"\nunits = 5\n'
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = invoke(
        "run", "--study", "st", "--space", str(space), "--trials", "2", "--max-epochs", "1",
        "--data", str(imdb_npz), "--limit", "200", "--seed", "3", "--storage", url,
        "--quiet", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    trials = json.loads(invoke("trials", "st", "--storage", url, "--format", "json").stdout)
    assert len(trials) == 2
    assert trials[0]["params"] == {"cell": "gru", "units": 5}
