"""Real training workers: `run --workers 2`, and a killed worker's trial taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXE = str(Path(sys.executable).with_name("rnnsearch"))
SPACE = """
[dimensions]
cell = { choice = ["gru", "simple"] }
units = { low = 4, high = 8 }
dropout = { low = 0.0, high = 0.5 }
maxlen = 40
embedding_dim = 8
vocab_size = 1000
batch_size = 16
"""


def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "RNNSEARCH_STORAGE": f"sqlite:///{tmp_path / 'w.db'}"}
    env["KERAS_BACKEND"] = "jax"  # as users' runs by default: no TensorFlow to import
    env.pop("RNNSEARCH_KILL_AT", None)
    return env


def _trials(env) -> list[dict]:
    out = subprocess.run(
        [EXE, "trials", "w", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_two_training_workers_finish_a_study(tmp_path, imdb_npz):
    (tmp_path / "s.toml").write_text(SPACE)
    env = _env(tmp_path)
    run = subprocess.run(
        [
            EXE,
            "run",
            "--study",
            "w",
            "--space",
            str(tmp_path / "s.toml"),
            "--trials",
            "4",
            "--workers",
            "2",
            "--data",
            str(imdb_npz),
            "--limit",
            "300",
            "--max-epochs",
            "2",
            "--seed",
            "1",
            "--quiet",
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["finished"] == 4
    # The summary counts the workers' trials (issue 20: it said 3 when 6 ran).
    assert json.loads(run.stdout)["ran"] == 4
    trials = _trials(env)
    assert len(trials) == 4
    assert {t["state"] for t in trials} <= {"complete", "pruned"}
    # both workers took trials: two different process ids own them
    assert len({t["extra"]["pid"] for t in trials}) == 2
    # TPE's start-up trials are random: workers seeded alike drew the same configurations
    assert len({json.dumps(t["config"], sort_keys=True) for t in trials}) == 4


def test_killed_workers_trials_are_taken_over(tmp_path, imdb_npz):
    (tmp_path / "s.toml").write_text(SPACE)
    env = _env(tmp_path)
    first = subprocess.run(
        [
            EXE,
            "run",
            "--study",
            "w",
            "--space",
            str(tmp_path / "s.toml"),
            "--trials",
            "3",
            "--data",
            str(imdb_npz),
            "--limit",
            "300",
            "--max-epochs",
            "2",
            "--seed",
            "1",
            "--quiet",
        ],
        env={**env, "RNNSEARCH_KILL_AT": "trial-started@1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == -signal.SIGKILL
    doomed = subprocess.Popen(
        [EXE, "worker", "w", "--quiet"], env={**env, "RNNSEARCH_KILL_AT": "after-epoch@1"}
    )
    survivor = subprocess.Popen([EXE, "worker", "w", "--quiet"], env=env)
    assert doomed.wait(timeout=300) == -signal.SIGKILL
    assert survivor.wait(timeout=600) == 0
    trials = _trials(env)
    finished = [t for t in trials if t["state"] in ("complete", "pruned", "failed")]
    interrupted = [t for t in trials if t["state"] == "interrupted"]
    assert len(finished) == 3
    assert len(interrupted) == 2  # the first run's trial and the doomed worker's
    # Each interrupted trial was taken over; a copy may itself be cut (the doomed worker can pick
    # up the first run's copy), so follow the chain of copies to a finished trial.
    copy_of = {
        t["extra"]["resumed_from_trial"]: t for t in trials if "resumed_from_trial" in t["extra"]
    }
    for cut in interrupted:
        current = cut
        while current["state"] == "interrupted":
            assert current["number"] in copy_of, f"trial {current['number']} was not taken over"
            current = copy_of[current["number"]]
        assert current["state"] in ("complete", "pruned", "failed")
    assert not [t for t in trials if t["state"] in ("running", "waiting")]
