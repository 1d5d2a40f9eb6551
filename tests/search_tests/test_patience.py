"""Early stopping of a trial (`run --patience N`): the rule on its own, then end to end; and the
end of a trial when the study's `--time-budget` runs out."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from search.cli import app
from search.trials import TrialOrder, _EpochReporter
from storage import StudyDatabase

SPACE = """
name = "tiny-patience"
description = "tiny GRUs with a learning rate high enough to overfit 300 reviews fast"

[dimensions]
cell = "gru"
units = { low = 8, high = 16 }
learning_rate = { low = 2e-2, high = 5e-2, log = true }
vocab_size = 2000
maxlen = 60
embedding_dim = 8
batch_size = 32
"""


class _Nothing:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class _Runner:
    """The runner's parts an epoch reporter uses, doing nothing (the rule is under test)."""

    def __init__(self, patience: int | None) -> None:
        self.plan = SimpleNamespace(patience=patience, time_budget=None)
        self.engine = SimpleNamespace(epoch_done=lambda *a: False)
        self.checkpoints = _Nothing()
        self.observer = _Nothing()

    def record_epoch(self, *args: Any) -> None:
        pass

    def set_user_attrs(self, *args: Any) -> None:
        pass


def reporter(patience: int | None, epochs: int = 10) -> _EpochReporter:
    order = TrialOrder(number=0, trial_id=1, config={}, epochs=epochs, lineage=0)
    return _EpochReporter(_Runner(patience), order, SimpleNamespace(fingerprint="f"))


@pytest.mark.parametrize(
    ("patience", "curve", "stops_after"),
    [
        (1, [0.6, 0.7, 0.65], 3),
        (2, [0.6, 0.7, 0.65, 0.69], 4),
        (2, [0.6, 0.7, 0.65, 0.71, 0.70, 0.72], None),  # each new best resets the count
        (1, [0.6, 0.6], 2),  # an equal value is no improvement
        (None, [0.9, 0.5, 0.4, 0.3], None),
        (3, [0.5, 0.6, 0.6, 0.6, 0.6], 5),
    ],
)
def test_patience_rule(patience, curve, stops_after):
    rep = reporter(patience)
    stopped = None
    for epoch, value in enumerate(curve, start=1):
        if rep.epoch_done(None, epoch, {"val_accuracy": value}, 1.0):
            stopped = epoch
            break
    assert stopped == stops_after
    assert rep.stopped_early == (stops_after is not None) and not rep.pruned


def test_no_early_stop_on_the_last_epoch():
    rep = reporter(1, epochs=3)
    results = [rep.epoch_done(None, e, {"val_accuracy": v}, 1.0) for e, v in [(1, 0.7), (2, 0.75)]]
    assert results == [False, False]
    assert rep.epoch_done(None, 3, {"val_accuracy": 0.6}, 1.0) is False
    assert not rep.stopped_early


def test_replayed_epochs_that_ran_out_of_patience_end_the_trial():
    rep = reporter(1)
    pruned = rep.replay([{"val_accuracy": 0.8}, {"val_accuracy": 0.7}], [1.0, 1.0])
    assert pruned is False and rep.stopped_early


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_run_with_patience_stops_trials_and_stores_the_setting(tmp_path: Path, imdb_npz: Path):
    space = tmp_path / "s.toml"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = invoke(
        "run", "--study", "p", "--space", str(space), "--trials", "4", "--data", str(imdb_npz),
        "--limit", "300", "--max-epochs", "8", "--patience", "1", "--seed", "2",
        "--storage", url, "--quiet", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    db = StudyDatabase(url, create=False)
    assert db.study_config("p").options["patience"] == 1
    complete = [t for t in db.trials("p") if t.state == "complete"]
    assert complete
    stopped = 0
    for t in complete:
        values = [e.val_accuracy for e in db.epochs(t.trial_id)]
        assert len(values) == t.epochs
        best = values.index(max(values)) + 1
        if t.epochs < 8:
            # ended exactly one epoch after its best, and says so
            stopped += 1
            assert t.epochs == best + 1 and t.extra["stopped_early_at"] == t.epochs
        else:
            # ran to the end: no epoch before the last failed to improve on the best so far
            assert all(values[i] > max(values[:i]) for i in range(1, 7))
            assert "stopped_early_at" not in t.extra
        assert t.extra["best_epoch"] == best
    assert stopped >= 1, "a learning rate of 2e-2..5e-2 on 240 reviews should overfit by epoch 8"
    db.dispose()

    # Hyperband decides epochs itself: --patience is refused before anything is touched.
    refused = invoke(
        "run", "--study", "hb", "--engine", "hyperband", "--patience", "2", "--data",
        str(imdb_npz), "--storage", url, "--quiet",
    )  # fmt: skip
    assert refused.exit_code == 2
    assert "--patience 2: not supported by --engine hyperband" in refused.stderr
    bad = invoke("run", "--study", "p", "--patience", "-1", "--storage", url, "--quiet")
    assert bad.exit_code == 2 and "--patience -1: expected 0 (off)" in bad.stderr


def test_time_budget_ends_the_running_trial_after_the_epoch_it_runs_out_in(
    tmp_path: Path, imdb_npz: Path
):
    # Up to 60 epochs a trial, a 6-second budget: without the budget the first trial alone would
    # train for minutes; with it the run ends about an epoch after 6 s.
    space = tmp_path / "s.toml"
    space.write_text(SPACE.replace("learning_rate = { low = 2e-2, high = 5e-2, log = true }", ""))
    url = f"sqlite:///{tmp_path / 'b.db'}"
    result = invoke(
        "run", "--study", "b", "--space", str(space), "--trials", "5", "--data", str(imdb_npz),
        "--limit", "200", "--max-epochs", "60", "--time-budget", "6s", "--seed", "2",
        "--storage", url, "--quiet", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    db = StudyDatabase(url, create=False)
    [trial] = db.trials("b")  # no second trial started: the budget was spent
    assert trial.state == "complete" and trial.value is not None
    epochs = db.epochs(trial.trial_id)
    assert 1 <= trial.epochs == len(epochs) < 60
    assert trial.extra["stopped_by_budget_at"] == trial.epochs
    # it stopped in the first epoch that ended past the budget, not later
    assert trial.duration_s >= 6.0
    before_last = trial.duration_s - epochs[-1].seconds
    assert before_last < 6.0 + 3.0, (trial.duration_s, [e.seconds for e in epochs])
    db.dispose()
    # Running it again with another budget replaces the stored one, and says so.
    again = invoke(
        "run", "--study", "b", "--time-budget", "7s", "--storage", url, "--quiet",
        "--format", "json",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["changed"] == [
        "--time-budget 7 s replaces the study's stored 6 s from this run on"
    ]
    db = StudyDatabase(url, create=False)
    assert db.study_config("b").options["time_budget_s"] == 7.0
    db.dispose()
