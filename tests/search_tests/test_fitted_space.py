"""The default space fitted to real data: statistics of each kind of data, `spaces show --data`,
the fitted space stored with a study and reused by resume, and the pruner option.

Short text: a generated CSV of 3-16 word reviews, three classes. Long text: a slice of the shared
IMDB file. Numeric: fixed-length (N, T, F) and variable-length (values + lengths) .npz files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import search.data as data
from search.cli import app
from search.data import load_source
from search.service import RunRequest, run_search
from storage import StudyDatabase

runner = CliRunner()
WORDS = {
    "pos": ["good", "great", "fine", "superb", "lovely", "charming"],
    "neg": ["bad", "awful", "poor", "dull", "boring", "weak"],
    "plot": ["story", "follows", "young", "man", "town", "family"],
}


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RNNSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_SOURCES", {})
    return tmp_path / "cache"


def short_text_csv(path: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(0)
    labels = list(WORDS)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = labels[i % 3]
            words = rng.choice(WORDS[label], size=int(rng.integers(3, 17)))
            w.writerow([" ".join(words) + f" w{i % 40} rare{i}", label])
    return path


def numeric_fixed(path: Path, n: int = 240, steps: int = 30) -> Path:
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, steps, 3)).astype(np.float32) + y[:, None, None]
    np.savez(path, x_train=x, y_train=y)
    return path


def numeric_variable(path: Path, n: int = 240) -> Path:
    rng = np.random.default_rng(2)
    lengths = rng.integers(5, 41, size=n)
    y = np.arange(n) % 4
    values = np.concatenate(
        [rng.normal(size=(k, 2)).astype(np.float32) + c for k, c in zip(lengths, y, strict=True)]
    )
    np.savez(path, x_train_values=values, x_train_lengths=lengths, y_train=y)
    return path


def show(*args: str) -> dict:
    res = runner.invoke(app, ["spaces", "show", "default", "--format", "json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_short_text_three_classes(tmp_path: Path):
    path = short_text_csv(tmp_path / "short.csv")
    shown = show("--data", str(path))
    stats = shown["fitted_to"]["stats"]
    assert stats["kind"] == "tokens" and stats["num_classes"] == 3
    assert 3 <= stats["length_p50"] <= stats["length_p90"] <= stats["length_p99"] <= 18
    maxlens = shown["dimensions"]["maxlen"]["choice"]
    assert max(maxlens) <= 18  # no padding to 200 or 400 for texts of at most 18 words
    # words seen at least twice: the 18 label words and w0..w39, never the rare{i} words
    source = load_source(str(path))
    assert source.fit_stats().words_seen_twice == 18 + 40
    assert shown["dimensions"]["vocab_size"] == 58 + 2  # too few words for two choices
    assert all(p["maxlen"] in maxlens for p in shown["start"])


def test_long_text_two_classes(imdb_npz: Path):
    shown = show("--data", str(imdb_npz), "--limit", "300")
    stats = shown["fitted_to"]["stats"]
    assert (stats["kind"], stats["num_classes"], stats["examples"]) == ("tokens", 2, 240)
    assert stats["first_word_id"] == 3  # Keras' IMDB: 0 padding, 1 start, 2 out of vocabulary
    maxlens = shown["dimensions"]["maxlen"]["choice"]
    assert len(maxlens) == 3 and maxlens[0] > 100 and maxlens[-1] > 400
    vocab = shown["dimensions"]["vocab_size"]["choice"]
    assert vocab[-1] == pytest.approx(stats["words_seen_twice"] + 3, rel=0.05)
    assert shown["dimensions"]["units"]["high"] == 64  # 240 examples: a smaller range


def test_numeric_fixed_length(tmp_path: Path):
    shown = show("--data", str(numeric_fixed(tmp_path / "fixed.npz")))
    dims = shown["dimensions"]
    assert "vocab_size" not in dims and "embedding_dim" not in dims
    assert dims["maxlen"] == 30
    assert shown["fitted_to"]["stats"]["features"] == 3
    assert all("maxlen" not in p and "vocab_size" not in p for p in shown["start"])


def test_numeric_variable_length_four_classes_and_toml(tmp_path: Path):
    path = numeric_variable(tmp_path / "var.npz")
    shown = show("--data", str(path))
    stats = shown["fitted_to"]["stats"]
    assert stats["num_classes"] == 4 and 5 <= stats["length_min"] < stats["length_max"] <= 40
    assert "vocab_size" not in shown["dimensions"]
    assert len(shown["dimensions"]["maxlen"]["choice"]) >= 2
    res = runner.invoke(app, ["spaces", "show", "default", "--data", str(path)])
    assert res.exit_code == 0
    assert res.stdout.startswith(f"# default fitted to {path}\n")
    assert "maxlen = { choice = [" in res.stdout and "vocab_size" not in res.stdout


def test_show_refuses_bad_data_options_in_one_line(tmp_path: Path):
    res = runner.invoke(app, ["spaces", "show", "default", "--data", str(tmp_path / "no.csv")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "no.csv: no such file or folder" in res.stderr
    res = runner.invoke(app, ["spaces", "show", "default", "--limit", "5"])
    assert res.exit_code == 2 and "need --data" in res.stderr
    path = short_text_csv(tmp_path / "short.csv")
    res = runner.invoke(
        app, ["spaces", "show", "default", "--data", str(path), "--label-col", "nope"]
    )
    assert res.exit_code == 2 and "no column 'nope'" in res.stderr


def test_a_study_stores_the_fitted_space_and_resume_keeps_it(tmp_path: Path):
    path = numeric_variable(tmp_path / "var.npz", n=120)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    req = RunRequest(
        study="num", storage=url, data=str(path), trials=1, max_epochs=1, seed=3, pruner="halving"
    )
    run_search(req)
    db = StudyDatabase(url, create=False)
    config = db.study_config("num")
    stored = json.loads(config.space_json)
    assert "fit" not in stored and "vocab_size" not in stored["dimensions"]
    assert config.options["space_fit"]["stats"]["num_classes"] == 4
    assert config.options["pruner"] == "halving"
    for trial in db.trials("num"):
        assert "vocab_size" not in trial.params and "embedding_dim" not in trial.params
        # ... nor in the whole configuration the trial ran with (no defaults filled in)
        assert "vocab_size" not in trial.config and "embedding_dim" not in trial.config
    [ran] = [t for t in db.trials("num") if t.state == "complete"]
    assert ran.config["units"] > 0 and ran.config["maxlen"] > 0 and ran.config["layers"] >= 1
    db.dispose()
    shown = show("--data", str(path))
    assert stored["dimensions"] == shown["dimensions"]  # `spaces show --data` = what run stores
    # Continuing with --space default names the template the study was fitted from: accepted,
    # and the stored space is kept (never fitted again).
    summary = run_search(RunRequest(study="num", storage=url, space="default", add=1, max_epochs=1))
    assert summary.finished == 2
    db = StudyDatabase(url, create=False)
    again = db.study_config("num")
    assert json.loads(again.space_json) == stored
    assert again.options["space_fit"] == config.options["space_fit"]
    assert again.options["pruner"] == "halving"  # stored, kept by later runs
    db.dispose()


def test_pruner_option_is_checked(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    res = runner.invoke(app, ["run", "--study", "s", "--pruner", "bogus", "--storage", url])
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "rnnsearch: error: --pruner bogus: expected one of median, median-warmup, patient, "
        "halving, none"
    )
    res = runner.invoke(
        app,
        ["run", "--study", "s", "--engine", "hyperband", "--pruner", "none", "--storage", url],
    )
    assert res.exit_code == 2 and "applies to --engine optuna only" in res.stderr
    assert not (tmp_path / "x.db").exists()
