"""Keras Tuner Hyperband engine: a tiny real search, every trial of it in the study database."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from search.cli import app

pytestmark = pytest.mark.slow

TINY_SPACE = """
name = "tiny-hb"
description = "tiny models for the Hyperband tests"

[dimensions]
cell = { choice = ["simple", "jordan", "gru"] }
units = { low = 4, high = 8 }
bidirectional = { choice = [false, true] }
merge_mode = { choice = ["concat", "sum"], when = { bidirectional = [true] } }
learning_rate = { low = 3e-3, high = 1e-2, log = true }
vocab_size = 1000
maxlen = 40
embedding_dim = 8
batch_size = 32
"""


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def hb_study(tmp_path_factory, imdb_npz: Path):
    root = tmp_path_factory.mktemp("hyperband")
    space = root / "tiny.toml"
    space.write_text(TINY_SPACE)
    db_path = root / "study.db"
    url = f"sqlite:///{db_path}"
    result = invoke(
        "run",
        "--study",
        "hb",
        "--space",
        str(space),
        "--engine",
        "hyperband",
        "--data",
        str(imdb_npz),
        "--limit",
        "400",
        "--max-epochs",
        "3",
        "--factor",
        "3",
        "--seed",
        "5",
        "--storage",
        url,
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    trials = invoke("trials", "hb", "--storage", url, "--format", "json")
    assert trials.exit_code == 0, trials.output
    return {
        "url": url,
        "root": root,
        "run": json.loads(result.stdout),
        "trials": json.loads(trials.stdout),
    }


def _kt_trials(kt_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name.removeprefix("trial_"): json.loads(p.read_text())
        for p in kt_dir.glob("trial_*/trial.json")
    }


def test_every_keras_tuner_trial_is_in_the_database(hb_study):
    from search.engines.hyperband_engine import schedule_trials
    from storage import StudyDatabase

    db = StudyDatabase(hb_study["url"])
    try:
        config = db.study_config("hb")
        kt_dir = Path(config.options["kt_dir"])
        # Keras Tuner's project directory sits beside the database, in the folder named by the
        # study's identity (issue 15), and is recorded in the study.
        assert kt_dir.parent == hb_study["root"] / "study.db.rnnsearch" / config.uid
        kt = _kt_trials(kt_dir)
        expected = schedule_trials(3, 3, 1)
        assert len(kt) == expected == 6
        # Each really trained: Keras Tuner marked none invalid or failed.
        assert {t["status"] for t in kt.values()} == {"COMPLETED"}
        rows = hb_study["trials"]
        assert len(rows) == expected
        assert sorted(r["extra"]["kt_trial_id"] for r in rows) == sorted(kt)
        for r in rows:
            extra = r["extra"]
            kt_trial = kt[extra["kt_trial_id"]]
            values = kt_trial["hyperparameters"]["values"]
            assert r["state"] == "complete"
            assert extra["bracket"] == values["tuner/bracket"]
            assert extra["round"] == values["tuner/round"]
            assert extra["initial_epoch"] == values["tuner/initial_epoch"]
            assert extra["final_epoch"] == values["tuner/epochs"]
            # Epochs counted in full (a warm start's inherited epochs included), contiguous.
            assert r["epochs"] == values["tuner/epochs"]
            epochs = db.epochs(r["trial_id"])
            assert [e.epoch for e in epochs] == list(range(1, values["tuner/epochs"] + 1))
            assert all(e.val_accuracy is not None and e.loss is not None for e in epochs)
            # Same objective as Keras Tuner's: the best val_accuracy over the epochs it trained.
            own = [e.val_accuracy for e in epochs if e.epoch > extra["initial_epoch"]]
            assert r["value"] == pytest.approx(max(own))
            assert r["value"] == pytest.approx(
                kt_trial["metrics"]["metrics"]["val_accuracy"]["observations"][0]["value"][0],
                abs=1e-6,
            )
            for name in ("cell", "units", "bidirectional", "learning_rate"):
                assert r["params"][name] == values[name]
        warm = [r for r in rows if r["extra"]["round"] > 0]
        assert warm, "a max-epochs-3, factor-3 Hyperband has one successive-halving round"
        by_kt = {r["extra"]["kt_trial_id"]: r for r in rows}
        for r in warm:
            extra = r["extra"]
            parent = by_kt[extra["warm_start_of_kt_trial"]]
            assert extra["warm_start_of"] == parent["number"]
            assert extra["initial_epoch"] >= 1
            inherited = db.epochs(r["trial_id"])[: extra["initial_epoch"]]
            assert [e.val_accuracy for e in inherited] == [
                e.val_accuracy for e in db.epochs(parent["trial_id"])[: extra["initial_epoch"]]
            ]
        # Training works: trials trained from scratch for 3 epochs lower their training loss.
        scratch = [r for r in rows if r["extra"]["round"] == 0 and r["epochs"] == 3]
        assert scratch
        for r in scratch:
            losses = [e.loss for e in db.epochs(r["trial_id"])]
            assert losses[-1] < losses[0], (r["params"], losses)
    finally:
        db.dispose()


def test_best_reads_a_hyperband_study_like_an_optuna_one(hb_study):
    result = invoke("best", "hb", "--top", "3", "--storage", hb_study["url"], "--format", "json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert len(top) == 3
    values = sorted((r["value"] for r in hb_study["trials"]), reverse=True)
    assert [t["value"] for t in top] == pytest.approx(values[:3])
    assert set(top[0]["params"]) >= {"cell", "units", "bidirectional", "learning_rate"}
    assert top[0]["epochs"] >= 1


def test_optuna_loads_the_hyperband_study(hb_study):
    study = optuna.load_study(study_name="hb", storage=hb_study["url"])
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(hb_study["trials"])
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert study.user_attrs["rnnsearch_engine"] == "hyperband"
    assert study.best_value == pytest.approx(max(r["value"] for r in hb_study["trials"]))
    # Optuna holds the learning curve too, under the same epoch numbers.
    last = max(trials, key=lambda t: len(t.intermediate_values))
    assert sorted(last.intermediate_values) == list(range(1, 4))


def test_mixing_engines_in_one_study_is_refused(hb_study, imdb_npz):
    result = invoke("run", "--study", "hb", "--engine", "optuna", "--storage", hb_study["url"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "mixing engines" in lines[0] and "hyperband" in lines[0]


def test_worker_cannot_join_a_hyperband_study(hb_study):
    result = invoke("worker", "hb", "--storage", hb_study["url"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot join" in lines[0]


def test_finished_schedule_resumes_to_nothing_more(hb_study):
    before = len(hb_study["trials"])
    result = invoke(
        "run", "--study", "hb", "--storage", hb_study["url"], "--quiet", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ran"] == 0 and summary["finished"] == before


def _kt_dir(db: Path, study: str) -> Path:
    """Where the study keeps Keras Tuner's project (under its identity; recorded with it)."""
    from storage import StudyDatabase

    database = StudyDatabase(f"sqlite:///{db}", create=False)
    try:
        return Path(database.study_config(study).options["kt_dir"])
    finally:
        database.dispose()


def _hb_env(tmp_path: Path) -> tuple[dict, list[str]]:
    import os

    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    env = {**os.environ, "RNNSEARCH_STORAGE": f"sqlite:///{tmp_path / 'study.db'}"}
    env.pop("RNNSEARCH_KILL_AT", None)
    return env, ["--space", str(space)]


def test_sigkilled_hyperband_resumes_to_its_schedule(tmp_path, imdb_npz):
    """A Hyperband run SIGKILLed from outside (once four epochs are recorded: inside an epoch,
    mostly) resumes: Keras Tuner's oracle continues its brackets (exactly the schedule's trials
    finish, none twice), the cut trial is listed as interrupted and run again, and Keras Tuner's
    state files stay whole. Kills at the named crash points, one after another, are
    test_lifecycle.py's crash table."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    exe = str(Path(sys.executable).with_name("rnnsearch"))
    env, space_args = _hb_env(tmp_path)
    args = [
        exe, "run", "--study", "hbk", *space_args, "--engine", "hyperband",
        "--data", str(imdb_npz), "--limit", "300", "--max-epochs", "3", "--seed", "2", "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = tmp_path / "study.db"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                (n,) = conn.execute("select count(*) from rnnsearch_epochs").fetchone()
        except sqlite3.Error:
            continue
        if n >= 4:
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -9
    resumed = subprocess.run(
        [exe, "resume", "hbk", "--quiet", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    listed = subprocess.run(
        [exe, "trials", "hbk", "--format", "json"], env=env, capture_output=True, text=True
    )
    rows = json.loads(listed.stdout)
    complete = [r for r in rows if r["state"] == "complete"]
    interrupted = [r for r in rows if r["state"] == "interrupted"]
    assert len(complete) == 6, [(r["number"], r["state"]) for r in rows]
    assert len(interrupted) <= 1
    assert not [r for r in rows if r["state"] in ("running", "waiting", "failed")]
    assert len({r["number"] for r in rows}) == len(rows)
    kt_dir = _kt_dir(tmp_path / "study.db", "hbk")
    kt_ids = sorted(p.parent.name.removeprefix("trial_") for p in kt_dir.glob("trial_*/trial.json"))
    # Each Keras Tuner trial finished exactly once in the database; the cut one was run again.
    assert sorted(r["extra"]["kt_trial_id"] for r in complete) == kt_ids
    assert {r["extra"]["kt_trial_id"] for r in interrupted} <= set(kt_ids)
    for r in complete:
        assert r["epochs"] == r["extra"]["final_epoch"]
    for p in kt_dir.rglob("*.json"):
        json.loads(p.read_text())
    assert not list(kt_dir.rglob("*.tmp-*"))
    best = subprocess.run(
        [exe, "best", "hbk", "--format", "json"], env=env, capture_output=True, text=True
    )
    assert best.returncode == 0 and json.loads(best.stdout)[0]["state"] == "complete"


def test_torn_keras_tuner_state_is_restored_from_its_last_good_version(tmp_path, imdb_npz):
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("rnnsearch"))
    env, space_args = _hb_env(tmp_path)
    run = subprocess.run(
        [exe, "run", "--study", "torn", *space_args, "--engine", "hyperband", "--data",
         str(imdb_npz), "--limit", "300", "--max-epochs", "3", "--seed", "4", "--quiet",
         "--trials", "4"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    kt_dir = _kt_dir(tmp_path / "study.db", "torn")
    oracle = kt_dir / "oracle.json"
    text = oracle.read_text()
    oracle.write_text(text[: len(text) // 2])  # what an in-place write cut by a kill leaves
    resumed = subprocess.run(
        [exe, "resume", "torn", "--trials", "6", "--quiet", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "oracle.json was torn; restored its last good version" in resumed.stderr
    json.loads(oracle.read_text())
    rows = json.loads(
        subprocess.run(
            [exe, "trials", "torn", "--format", "json"], env=env, capture_output=True, text=True
        ).stdout
    )
    complete = [r for r in rows if r["state"] == "complete"]
    # The four finished before are all still there; the study went on to its new cap.
    assert len(complete) >= 6
    assert [r["number"] for r in rows[:4]] == [0, 1, 2, 3]
    assert all(r["state"] == "complete" for r in rows[:4])
