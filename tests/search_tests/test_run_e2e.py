"""End to end: `rnnsearch run` on a 500-review IMDB slice, then the query commands on its study."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from search.cli import app

TINY_SPACE = """
name = "tiny"
description = "tiny models for tests"

[dimensions]
cell = { choice = ["simple", "lstm", "gru"] }
units = { low = 4, high = 12 }
bidirectional = { choice = [false, true] }
dropout = { low = 0.0, high = 0.5 }
learning_rate = { low = 1e-3, high = 1e-2, log = true }
vocab_size = 2000
maxlen = 60
embedding_dim = 8
batch_size = 32
"""


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, imdb_npz: Path):
    root = tmp_path_factory.mktemp("e2e")
    space = root / "tiny.toml"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{root / 'study.db'}"
    result = invoke(
        "run",
        "--study",
        "imdb-e2e",
        "--space",
        str(space),
        "--engine",
        "optuna",
        "--trials",
        "3",
        "--data",
        str(imdb_npz),
        "--limit",
        "500",
        "--max-epochs",
        "2",
        "--seed",
        "11",
        "--storage",
        url,
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    return {"url": url, "path": root / "study.db", "space": space, "run": json.loads(result.stdout)}


def test_run_leaves_three_finished_trials_with_epoch_rows(study_db):
    summary = study_db["run"]
    assert summary["finished"] == 3 and summary["target"] == 3
    with sqlite3.connect(study_db["path"]) as conn:
        states = [s for (s,) in conn.execute("select state from trials order by number")]
        assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}
        rows = conn.execute(
            "select t.trial_id, count(e.epoch), min(e.epoch), max(e.epoch) from rnnsearch_trials t "
            "join rnnsearch_epochs e on e.trial_id = t.trial_id group by t.trial_id"
        ).fetchall()
        assert len(rows) == 3
        for _tid, n, lo, hi in rows:
            assert lo == 1 and hi == n and 1 <= n <= 2
        nulls = conn.execute(
            "select count(*) from rnnsearch_epochs where loss is null or val_accuracy is null "
            "or accuracy is null or val_loss is null or seconds is null"
        ).fetchone()[0]
        assert nulls == 0
        info = conn.execute(
            "select wall_seconds, data_fingerprint, versions from rnnsearch_trials"
        ).fetchall()
    for wall, fingerprint, versions in info:
        assert wall > 0 and fingerprint
        assert {"tensorflow", "keras", "optuna"} <= set(json.loads(versions))


def test_best_json_returns_top_trial_with_all_parameters(study_db):
    result = invoke(
        "best", "imdb-e2e", "--top", "3", "--format", "json", "--storage", study_db["url"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True)
    top = rows[0]
    searched = {"cell", "units", "bidirectional", "dropout", "learning_rate"}
    assert set(top["params"]) == searched
    assert top["config"]["maxlen"] == 60 and top["config"]["vocab_size"] == 2000
    assert top["epochs"] >= 1 and top["duration_s"] > 0
    assert 0.0 <= top["value"] <= 1.0
    assert top["value"] == pytest.approx(max(t["value"] for t in rows))


def test_optuna_loads_the_same_study(study_db):
    study = optuna.load_study(study_name="imdb-e2e", storage=study_db["url"])
    assert len(study.trials) == 3
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    assert study.best_value == pytest.approx(
        json.loads(
            invoke("best", "imdb-e2e", "--format", "json", "--storage", study_db["url"]).stdout
        )[0]["value"]
    )
    # every epoch was reported to Optuna as an intermediate value
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)
    assert study.user_attrs["rnnsearch_seed"] == 11


def test_trials_and_studies_formats(study_db):
    url = study_db["url"]
    rows = json.loads(invoke("trials", "imdb-e2e", "--format", "json", "--storage", url).stdout)
    assert [r["number"] for r in rows] == [0, 1, 2]
    csv_out = invoke("trials", "imdb-e2e", "--format", "csv", "--storage", url).stdout.splitlines()
    assert csv_out[0].startswith("trial,state,value,epochs_trained,duration_s")
    assert len(csv_out) == 4
    table = invoke("trials", "imdb-e2e", "--storage", url).stdout
    assert "complete" in table or "pruned" in table
    studies = json.loads(invoke("studies", "--format", "json", "--storage", url).stdout)
    assert [s["name"] for s in studies] == ["imdb-e2e"]
    assert studies[0]["engine"] == "optuna" and studies[0]["space"] == "tiny"
    assert sum(studies[0]["counts"].values()) == 3


def test_best_on_missing_study_exits_2_with_one_line(study_db):
    result = invoke("best", "no-such-study", "--storage", study_db["url"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no study named 'no-such-study'" in lines[0]
    assert "imdb-e2e" in lines[0]


def test_not_a_database_and_bad_url_exit_2(tmp_path: Path):
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    for args in (
        ["best", "x", "--storage", f"sqlite:///{junk}"],
        ["studies", "--storage", "oracle://scott@tiger/db"],
        ["trials", "x", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"],
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    assert junk.read_text() == "hello"
    assert not (tmp_path / "missing.db").exists()


def test_second_run_adds_trials_to_the_same_study(study_db):
    url = study_db["url"]
    before = json.loads(invoke("trials", "imdb-e2e", "--format", "json", "--storage", url).stdout)
    result = invoke(
        "run",
        "--study",
        "imdb-e2e",
        "--trials",
        "1",
        "--storage",
        url,
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["target"] == 4 and summary["finished"] == 4 and summary["ran"] == 1
    after = json.loads(invoke("trials", "imdb-e2e", "--format", "json", "--storage", url).stdout)
    assert [r["number"] for r in after] == [0, 1, 2, 3]
    # the earlier trials are untouched
    assert [(r["number"], r["value"], r["epochs"]) for r in after[:3]] == [
        (r["number"], r["value"], r["epochs"]) for r in before
    ]
    # the stored space, data and seed were used
    assert after[3]["config"]["maxlen"] == 60
    assert len({r["data_fingerprint"] for r in after}) == 1


def test_run_refuses_other_data_on_existing_study(study_db, tmp_path: Path):
    result = invoke(
        "run",
        "--study",
        "imdb-e2e",
        "--trials",
        "1",
        "--data",
        "imdb",
        "--storage",
        study_db["url"],
        "--quiet",
    )
    assert result.exit_code == 2
    assert "not comparable" in result.stderr


def test_offline_imdb_says_how_to_pass_a_local_copy(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached ~/.keras/datasets/imdb.npz
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / ".keras"))
    import search.data as data

    monkeypatch.setattr(data, "IMDB_ORIGIN", "http://127.0.0.1:9/imdb.npz")
    result = invoke(
        "run",
        "--study",
        "x",
        "--data",
        "imdb",
        "--trials",
        "1",
        "--quiet",
        "--storage",
        f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "--data imdb" in line and "imdb.npz" in line
