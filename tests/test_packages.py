"""The top-level package names are generic; make sure they are ours, and light where promised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_packages_resolve_to_this_repository():
    import search
    import spaces
    import storage

    for module in (search, spaces, storage):
        assert Path(module.__file__).resolve().parent.parent == REPO, module.__file__


def test_spaces_and_storage_import_without_tensorflow_or_optuna():
    code = (
        "import sys, json, spaces, storage;"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'optuna') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom search.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0\n"
        "print('tensorflow' in sys.modules, 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_subprocess_smoke_run_and_best(tmp_path: Path, imdb_npz: Path):
    """The installed console script, as a user runs it, in a fresh directory."""
    exe = Path(sys.executable).with_name("rnnsearch")
    assert exe.exists(), "pip install -e . installs the rnnsearch script"
    space = tmp_path / "s.toml"
    space.write_text(
        '[dimensions]\ncell = "gru"\nunits = { low = 4, high = 8 }\n'
        "maxlen = 40\nembedding_dim = 8\nvocab_size = 1000\n"
    )
    env = {**os.environ, "RNNSEARCH_STORAGE": f"sqlite:///{tmp_path / 'env.db'}"}
    run = subprocess.run(
        [
            str(exe),
            "run",
            "--study",
            "smoke",
            "--space",
            str(space),
            "--trials",
            "1",
            "--data",
            str(imdb_npz),
            "--limit",
            "200",
            "--max-epochs",
            "1",
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "1/1 trials finished" in run.stdout
    assert (tmp_path / "env.db").exists() and not (tmp_path / "rnnsearch.db").exists()
    best = subprocess.run(
        [str(exe), "best", "smoke", "--format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)[0]["params"]["units"] in range(4, 9)
