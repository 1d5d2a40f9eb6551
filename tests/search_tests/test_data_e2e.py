"""End to end through the CLI: a numeric multi-class search that must beat chance clearly, and
a text search on a slice of the shared IMDB CSV whose stored data options are reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data_formats import imdb_slice
from typer.testing import CliRunner

import search.data as data
from search.cli import app
from storage import StudyDatabase

SPACE = """
name = "tiny-numeric"
description = "small recurrent models for generated sequences"

[dimensions]
cell = { choice = ["gru", "lstm"] }
units = { low = 12, high = 24 }
learning_rate = { low = 5e-3, high = 2e-2, log = true }
bidirectional = false
dropout = 0.0
maxlen = 40
batch_size = 32
"""

TEXT_SPACE = """
name = "tiny-text"
description = "tiny text models"

[dimensions]
cell = { choice = ["gru", "simple"] }
units = { low = 4, high = 8 }
learning_rate = 5e-3
vocab_size = 2000
maxlen = 150
embedding_dim = 8
batch_size = 32
"""


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_SOURCES", {})


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def make_numeric(path: Path, n: int = 900, seed: int = 0) -> Path:
    """3 classes, variable lengths 5..30, 3 features: the class is the feature whose mean over
    the sequence is largest (a rule a small RNN learns in a few epochs)."""
    rng = np.random.default_rng(seed)
    xs = np.empty(n, dtype=object)
    ys = np.zeros(n, dtype=np.int64)
    for i in range(n):
        label = i % 3
        steps = int(rng.integers(5, 31))
        x = rng.normal(0.0, 1.0, size=(steps, 3))
        x[:, label] += 0.8
        xs[i], ys[i] = x * 10 + 100, label  # raw scale far from standard: standardisation matters
    cut = int(n * 0.8)
    np.savez(path, x_train=xs[:cut], y_train=ys[:cut], x_test=xs[cut:], y_test=ys[cut:])
    return path


# 7 s on an idle 2-core machine (about 30 s under heavy load): not marked slow.
def test_numeric_multiclass_search_beats_chance(tmp_path: Path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    npz = make_numeric(tmp_path / "seq.npz")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = invoke(
        "run",
        "--study",
        "numeric",
        "--space",
        str(space),
        "--trials",
        "3",
        "--data",
        str(npz),
        "--max-epochs",
        "4",
        "--seed",
        "3",
        "--storage",
        url,
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["finished"] == 3
    best = summary["best"]
    # chance is 1/3 on three balanced classes
    assert best["value"] > 0.7, best
    db = StudyDatabase(url, create=False)
    stored = db.study_config("numeric").data
    assert stored["format"] == "numeric-npz" and stored["kind"] == "numeric"
    assert stored["num_classes"] == 3 and stored["features"] == 3
    assert stored["options"]["bucketing"] is True
    db.dispose()


@pytest.fixture()
def imdb_csv(tmp_path: Path) -> Path:
    return imdb_slice(tmp_path / "imdb_slice.csv.gz", per_class=100, test_per_class=10)


def test_text_csv_search_and_resume_with_stored_options(tmp_path: Path, imdb_csv: Path):
    space = tmp_path / "space.toml"
    space.write_text(TEXT_SPACE)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = invoke(
        "run",
        "--study",
        "text",
        "--space",
        str(space),
        "--trials",
        "1",
        "--data",
        str(imdb_csv),
        "--text-col",
        "text",
        "--label-col",
        "label",
        "--split-col",
        "split",
        "--no-bucketing",
        "--max-epochs",
        "1",
        "--seed",
        "1",
        "--storage",
        url,
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["finished"] == 1
    db = StudyDatabase(url, create=False)
    stored = db.study_config("text").data
    db.dispose()
    assert stored["format"] == "text-csv" and stored["train_examples"] == 200
    assert stored["options"] == {
        "text_col": "text",
        "label_col": "label",
        "split_col": "split",
        "bucketing": False,
    }
    # A different column on the existing study is refused; no option means the stored ones.
    refused = invoke(
        "run",
        "--study",
        "text",
        "--text-col",
        "review",
        "--trials",
        "1",
        "--storage",
        url,
        "--quiet",
    )
    assert refused.exit_code == 2
    assert "--text-col review: study 'text' was started with --text-col text" in refused.stderr
    data._SOURCES.clear()  # as a new process: the prepared arrays come from the disk cache
    again = invoke(
        "run", "--study", "text", "--trials", "1", "--storage", url, "--quiet", "--format", "json"
    )
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["finished"] == 2 and summary["ran"] == 1
    assert data.load_source(str(imdb_csv), options=stored["options"]).cache_status == "hit"


def test_retrain_scores_the_test_set_as_its_saved_model_predicts(tmp_path: Path, imdb_csv: Path):
    """A study searched with bucketing is retrained on by-length batches; its saved network
    masks the padding, so a review scores the same alone, in a by-length batch or padded to
    maxlen, and the recorded test figures are that network's."""
    space = tmp_path / "space.toml"
    space.write_text(
        TEXT_SPACE.replace("maxlen = 150", "maxlen = 3000").replace(
            "learning_rate = 5e-3", "learning_rate = 1e-2"
        )
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = invoke(
        "run", "--study", "text", "--space", str(space), "--trials", "1",
        "--data", str(imdb_csv), "--text-col", "text", "--label-col", "label",
        "--split-col", "split", "--max-epochs", "1", "--seed", "1",
        "--storage", url, "--quiet", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = tmp_path / "winner.keras"
    result = invoke(
        "retrain", "text", "--epochs", "3", "--save", str(saved), "--storage", url,
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)

    import keras

    from search.datasets.batching import evaluation_inputs

    db = StudyDatabase(url, create=False)
    stored = db.study_config("text").data
    db.dispose()
    full = data.load_source(str(imdb_csv), options=stored["options"]).prepare_full(res["config"])
    # one by-length test batch is as wide as its longest review: shorter than maxlen here
    assert full.spec.variable_length and full.len_test.max() < 3000
    network = keras.saving.load_model(saved).get_layer("classifier")
    network.compile(loss="binary_crossentropy", metrics=["accuracy"])
    args = (full.x_test, full.y_test, full.len_test, 512, full.padding)
    by_length = network.evaluate(**evaluation_inputs(*args, bucketing=True), verbose=0)
    padded = network.evaluate(**evaluation_inputs(*args, bucketing=False), verbose=0)
    assert by_length[1] == pytest.approx(res["test_accuracy"], abs=1e-6)
    assert padded[1] == pytest.approx(res["test_accuracy"], abs=1e-6)
    assert by_length[0] == pytest.approx(res["test_loss"], rel=1e-4)
    assert padded[0] == pytest.approx(by_length[0], rel=1e-4)


def test_data_changed_under_a_study_is_refused_until_restored(tmp_path: Path):
    """The same path with other content (a file edited or replaced after the study started):
    run, resume and retrain refuse it in one line and change nothing; the original content
    back, the study goes on."""
    import hashlib
    import shutil

    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace('{ choice = ["gru", "lstm"] }', '"gru"'))
    npz = make_numeric(tmp_path / "seq.npz", n=240)
    shutil.copy(npz, tmp_path / "original.npz")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = invoke(
        "run", "--study", "num", "--space", str(space), "--trials", "1", "--data", str(npz),
        "--max-epochs", "1", "--seed", "0", "--storage", url, "--quiet",
    )  # fmt: skip
    assert first.exit_code == 0, first.output

    def digest() -> str:
        return hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest()

    before = digest()
    db = StudyDatabase(url, create=False)
    stored = db.study_config("num").data
    db.dispose()
    make_numeric(npz, n=300, seed=1)  # new content, same path
    data._SOURCES.clear()
    model = tmp_path / "winner.keras"
    for args in (
        ["run", "--study", "num", "--trials", "2", "--quiet"],
        ["resume", "num", "--trials", "2"],
        ["retrain", "num", "--save", str(model)],
    ):
        refused = invoke(*args, "--storage", url)
        lines = refused.stderr.strip().splitlines()
        assert refused.exit_code == 2, refused.output
        assert len(lines) == 1 and "Traceback" not in refused.output, refused.output
        assert lines[0].startswith("rnnsearch: error: ") and "seq.npz" in lines[0], lines[0]
        assert "changed since study 'num' started" in lines[0], lines[0]
        assert digest() == before, args
    assert not model.exists()
    shutil.copy(tmp_path / "original.npz", npz)
    data._SOURCES.clear()
    again = invoke("resume", "num", "--trials", "2", "--storage", url, "--format", "json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["finished"] == 2
    db = StudyDatabase(url, create=False)
    assert len({t.data_fingerprint for t in db.trials("num")}) == 1
    assert db.study_config("num").data == stored
    db.dispose()
