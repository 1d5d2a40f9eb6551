"""Crash tests: real `rnnsearch run` processes SIGKILLed from outside or stopped with Ctrl-C,
then resumed.

Each case cuts a search (a SIGKILL from outside while an epoch runs, one or two SIGINTs),
resumes it with `rnnsearch resume`, and checks the rules: the study reaches its target exactly;
no trial is lost or counted twice; the cut trial's copy continues from the last checkpointed
epoch with no gap and no repeated epoch; `best` works. Kills at each named crash point of
search.faults, one after another, are the crash table of test_lifecycle.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXE = str(Path(sys.executable).with_name("rnnsearch"))
SPACE = """
name = "crash"
[dimensions]
cell = { choice = ["gru", "simple"] }
units = { low = 4, high = 8 }
maxlen = 40
embedding_dim = 8
vocab_size = 1000
batch_size = BATCH
"""
TRIALS = 3
EPOCHS = 3
#: Runs with long epochs (batch 4), cut from outside: two trials are enough to resume.
SLOW_TRIALS = 2
SLOW_LIMIT = "1200"


def _run(args, env, timeout=300):
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _setup(tmp_path: Path, batch: int = 16, backend: str = "jax") -> tuple[dict, list[str]]:
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace("BATCH", str(batch)))
    # JAX by default, as users' runs (no TensorFlow to import: quicker starts). The tests that
    # signal a run from outside at a moment inside an epoch run TensorFlow's uncompiled graphs,
    # whose epochs of this tiny model last long enough for that moment.
    env = {**os.environ, "RNNSEARCH_STORAGE": f"sqlite:///{tmp_path / 'study.db'}"}
    env["KERAS_BACKEND"] = backend
    env.pop("RNNSEARCH_KILL_AT", None)
    return env, ["--space", str(space)]


def _trials(env) -> list[dict]:
    out = _run(["trials", "crash", "--format", "json"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _epochs(db: Path) -> dict[int, list[tuple]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select t.number, e.epoch, e.loss, e.val_accuracy from rnnsearch_epochs e "
            "join rnnsearch_trials t on t.trial_id = e.trial_id order by t.number, e.epoch"
        ).fetchall()
    out: dict[int, list[tuple]] = {}
    for number, epoch, loss, val in rows:
        out.setdefault(number, []).append((epoch, loss, val))
    return out


def _check_resumed_study(tmp_path: Path, env: dict, target: int = TRIALS) -> dict:
    trials = _trials(env)
    finished = [t for t in trials if t["state"] in ("complete", "pruned", "failed")]
    interrupted = [t for t in trials if t["state"] == "interrupted"]
    assert len(finished) == target, [(t["number"], t["state"]) for t in trials]
    assert not [t for t in trials if t["state"] in ("running", "waiting")]
    numbers = [t["number"] for t in trials]
    assert len(numbers) == len(set(numbers))
    epochs = _epochs(tmp_path / "study.db")
    for t in finished:
        got = [e for e, _, _ in epochs.get(t["number"], [])]
        # no gap, no repeat: exactly 1..n
        assert got == list(range(1, len(got) + 1)), (t["number"], got)
        assert t["epochs"] == len(got)
        if t["state"] == "complete":
            assert len(got) == EPOCHS
    # every interrupted trial was run again exactly once, by a finished copy
    copies = [t for t in finished if "resumed_from_trial" in t["extra"]]
    assert sorted(c["extra"]["resumed_from_trial"] for c in copies) == sorted(
        t["number"] for t in interrupted
    )
    for copy in copies:
        cut = copy["extra"]["resumed_from_trial"]
        cut_params = next(t["params"] for t in trials if t["number"] == cut)
        assert copy["params"] == cut_params
        restored_at = copy["extra"].get("resumed_at_epoch", 0)
        cut_epochs = epochs.get(cut, [])
        # the cut trial's recorded epochs reappear unchanged (restored, not re-trained) ...
        assert epochs[copy["number"]][: len(cut_epochs)] == cut_epochs
        # ... and training went on from the checkpoint, not from epoch 0
        assert restored_at >= len(cut_epochs)
    best = _run(["best", "crash", "--format", "json"], env)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)[0]["state"] == "complete"
    return {"trials": trials, "copies": copies, "interrupted": interrupted}


def test_sigkill_from_outside_inside_an_epoch_then_resume(tmp_path, imdb_npz):
    # batch 4 on 960 training examples makes an epoch long enough to land a kill inside it
    env, space_args = _setup(tmp_path, batch=4, backend="tensorflow")
    proc = subprocess.Popen(
        [
            EXE,
            "run",
            "--study",
            "crash",
            *space_args,
            "--trials",
            str(SLOW_TRIALS),
            "--data",
            str(imdb_npz),
            "--limit",
            SLOW_LIMIT,
            "--max-epochs",
            str(EPOCHS),
            "--seed",
            "5",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    db = tmp_path / "study.db"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if db.exists() and sum(len(v) for v in _safe_epochs(db).values()) >= 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the search recorded no epoch in time")
        time.sleep(0.3)  # well inside epoch 2 of trial 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    cut_epochs = _safe_epochs(db)
    assert proc.returncode == -signal.SIGKILL
    resumed = _run(["resume", "crash", "--quiet"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = _check_resumed_study(tmp_path, env, SLOW_TRIALS)
    [cut] = result["interrupted"]
    [copy] = result["copies"]
    assert copy["extra"]["resumed_at_epoch"] == len(cut_epochs[cut["number"]])


def _safe_epochs(db: Path) -> dict[int, list[tuple]]:
    try:
        return _epochs(db)
    except sqlite3.OperationalError:  # tables not created yet
        return {}


def test_resume_trials_means_total_and_add_means_more(tmp_path, imdb_npz):
    env, space_args = _setup(tmp_path)
    first = _run(
        [
            "run",
            "--study",
            "crash",
            *space_args,
            "--trials",
            "2",
            "--data",
            str(imdb_npz),
            "--limit",
            "300",
            "--max-epochs",
            "1",
            "--seed",
            "5",
            "--quiet",
            "--format",
            "json",
        ],
        env,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    total = _run(["resume", "crash", "--trials", "3", "--quiet", "--format", "json"], env)
    assert json.loads(total.stdout)["finished"] == 3
    same = _run(["resume", "crash", "--trials", "3", "--quiet", "--format", "json"], env)
    assert json.loads(same.stdout)["ran"] == 0
    more = _run(["resume", "crash", "--add", "1", "--quiet", "--format", "json"], env)
    assert json.loads(more.stdout)["finished"] == 4 and json.loads(more.stdout)["target"] == 4
    assert len(_trials(env)) == 4


def _start_slow_run(tmp_path, imdb_npz):
    env, space_args = _setup(tmp_path, batch=4, backend="tensorflow")
    proc = subprocess.Popen(
        [
            EXE,
            "run",
            "--study",
            "crash",
            *space_args,
            "--trials",
            str(SLOW_TRIALS),
            "--data",
            str(imdb_npz),
            "--limit",
            SLOW_LIMIT,
            "--max-epochs",
            str(EPOCHS),
            "--seed",
            "5",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = tmp_path / "study.db"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if db.exists() and sum(len(v) for v in _safe_epochs(db).values()) >= 1:
            return env, proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the search recorded no epoch in time")


def test_ctrl_c_marks_the_trial_interrupted_and_resume_continues(tmp_path, imdb_npz):
    env, proc = _start_slow_run(tmp_path, imdb_npz)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "rnnsearch: interrupted"
    # Before it: what finished, and the command that continues (issue 20).
    assert "rnnsearch: study crash: 0/" in err
    assert "rnnsearch: continue with: rnnsearch resume crash" in err
    states = {t["number"]: t["state"] for t in _trials(env)}
    assert sorted(states.values()) == ["interrupted", "waiting"], states
    [cut] = [t for t in _trials(env) if t["state"] == "interrupted"]
    assert "Ctrl-C" in cut["reason"]
    # Checkpoints live under the study's identity, one folder per lineage (issue 15).
    lineage = f"lineage-{cut['extra']['lineage']:05d}"
    ckpt = tmp_path / "study.db.rnnsearch"
    assert list(ckpt.glob(f"*/checkpoints/{lineage}/epoch-*")), (
        "the interrupted trial's checkpoint is kept"
    )
    resumed = _run(["resume", "crash", "--quiet"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = _check_resumed_study(tmp_path, env, SLOW_TRIALS)
    [copy] = result["copies"]
    assert copy["extra"]["resumed_from_trial"] == cut["number"]
    assert copy["extra"]["resumed_at_epoch"] >= 1


def test_second_ctrl_c_aborts_at_once(tmp_path, imdb_npz):
    env, proc = _start_slow_run(tmp_path, imdb_npz)
    proc.send_signal(signal.SIGINT)
    # Two signals that arrive while the main thread is inside a C call (a training step) reach
    # Python's handler as one: CPython keeps a flag per signal, not a count. A person's second
    # Ctrl-C comes a moment after the first.
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert time.monotonic() - started < 10
    # whatever the moment, the database stays readable and a resume finishes the study
    resumed = _run(["resume", "crash", "--quiet"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _check_resumed_study(tmp_path, env, SLOW_TRIALS)
