"""Using the winner (issue 18): raw-input models from `retrain --save` and `model --save`,
`predict`, `export-model`, on small real studies (a slice of the shared IMDB CSV; generated
numeric sequences), through the CLI in-process; the saved file is also loaded in a fresh
Python process that imports only Keras and rnnsearch's layers."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_data_e2e import make_numeric
from test_data_formats import IMDB_CSV, imdb_slice
from typer.testing import CliRunner

import search.data as data
from search.cli import app

REPO = Path(__file__).resolve().parents[2]
TEXT_SPACE = """
name = "tiny-text-serving"
description = "tiny GRUs with max pooling over time"

[dimensions]
cell = "gru"
units = { low = 4, high = 8 }
head = "max"
learning_rate = { low = 1e-2, high = 3e-2, log = true }
vocab_size = 2000
maxlen = 120
embedding_dim = 8
batch_size = 32
"""
NUMERIC_SPACE = """
name = "tiny-numeric-serving"
description = "small GRUs for generated sequences"

[dimensions]
cell = "gru"
units = 12
learning_rate = 1e-2
bidirectional = false
dropout = 0.0
maxlen = 40
batch_size = 32
"""


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def ok_json(*args: str) -> Any:
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(*args: str) -> str:
    """The one stderr line of a command refused with exit 2."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnsearch: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def text_study(tmp_path_factory) -> dict[str, Any]:
    """2 trials of 2 epochs on 120 reviews (keep the checkpoints of 1), retrained for 2 epochs
    on them and tested on 40; the model saved with raw text input."""
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNSEARCH_CACHE", str(root / "cache"))
        mp.setattr(data, "_SOURCES", {})
        csv_path = imdb_slice(root / "slice.csv.gz", per_class=60, test_per_class=20)
        space = root / "space.toml"
        space.write_text(TEXT_SPACE)
        url = f"sqlite:///{root / 'study.db'}"
        ok_json(
            "run", "--study", "text", "--space", str(space), "--trials", "2",
            "--data", str(csv_path), "--max-epochs", "2", "--seed", "4",
            "--keep-checkpoints", "1", "--storage", url, "--quiet",
        )  # fmt: skip
        saved = root / "winner.keras"
        res = ok_json("retrain", "text", "--epochs", "2", "--save", str(saved), "--storage", url)
        trials = ok_json("trials", "text", "--storage", url)
        yield {"root": root, "csv": csv_path, "url": url, "saved": saved, "retrain": res,
               "trials": trials, "mp": mp}  # fmt: skip


def _test_rows(path: Path) -> tuple[list[str], list[int]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


FRESH = """
import csv, gzip, json, sys
import numpy as np
import keras
import search.model  # rnnsearch's layers: all a fresh process needs
import tensorflow as tf

model = keras.saving.load_model(sys.argv[1])
with gzip.open(sys.argv[2], "rt", encoding="utf-8", newline="") as fh:
    rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
texts = [r["text"] for r in rows]
y = np.array([int(r["label"]) for r in rows])
probs = model.predict(tf.constant(texts), batch_size=16, verbose=0)
alone = np.concatenate([model.predict(tf.constant([t]), verbose=0) for t in texts[:3]])
names = model.get_layer("class_probabilities").class_names
print(json.dumps({
    "accuracy": float((probs.argmax(1) == y).mean()),
    "loss": float(-np.log(np.clip(probs[np.arange(len(y)), y].astype("float64"), 1e-7, 1)).mean()),
    "alone_difference": float(np.abs(alone - probs[:3]).max()),
    "classes": names,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("search", "optuna")),
}))
"""


def test_retrained_text_model_reproduces_its_test_accuracy_in_a_fresh_process(text_study):
    """Raw test reviews in, in a new process: exactly the recorded test accuracy (and loss);
    a review's probabilities do not depend on the batch it is in."""
    res = text_study["retrain"]
    assert res["input"] == "text" and res["classes"] == ["0", "1"]
    assert res["test_examples"] == 40
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, str(text_study["saved"]), str(text_study["csv"])],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["accuracy"] == res["test_accuracy"]
    assert got["loss"] == pytest.approx(res["test_loss"], rel=1e-5)
    assert got["alone_difference"] < 1e-5
    assert got["classes"] == ["0", "1"]
    # the file needs Keras and rnnsearch's layers, not the search machinery
    assert "optuna" not in got["modules"] and "search.trials" not in got["modules"]
    shown = ok_json("best", "text", "--with-test", "--storage", text_study["url"])[0]
    assert shown["test_accuracy"] == res["test_accuracy"]


def test_predict_text_on_rows_of_the_shared_imdb_csv(text_study, tmp_path: Path):
    texts = []
    with gzip.open(IMDB_CSV, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "test" and int(row["id"]) % 997 == 5:
                texts.append(row["text"])
            if len(texts) == 3:
                break
    args = ["predict", str(text_study["saved"])]
    for t in texts:
        args += ["--text", t]
    rows = ok_json(*args)
    assert [r["index"] for r in rows] == [0, 1, 2]
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(text_study["saved"])
    expected = model.predict(tf.constant(texts), verbose=0)
    for r, probs in zip(rows, expected, strict=True):
        assert set(r["probabilities"]) == {"0", "1"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert r["predicted"] == max(r["probabilities"], key=r["probabilities"].get)
        assert [r["probabilities"]["0"], r["probabilities"]["1"]] == pytest.approx(
            probs.tolist(), abs=1e-5
        )
    # --data on the study's file, test rows: its labels come along, and the accuracy is the
    # recorded one; CSV into a file
    out = tmp_path / "pred.csv"
    result = invoke(
        "predict", str(text_study["saved"]), "--data", str(text_study["csv"]), "--split", "test",
        "--format", "csv", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["index", "label", "predicted", "p_0", "p_1"]
    accuracy = np.mean([r["label"] == r["predicted"] for r in table])
    assert len(table) == 40 and accuracy == pytest.approx(text_study["retrain"]["test_accuracy"])
    shown = invoke("predict", str(text_study["saved"]), "--text", texts[0])
    assert shown.exit_code == 0 and "predicted" in shown.stdout and "p_1" in shown.stdout


def test_model_from_the_kept_checkpoint_scores_the_recorded_val_accuracy(
    text_study, tmp_path: Path
):
    url = text_study["url"]
    trials = text_study["trials"]
    best = max(trials, key=lambda t: t["value"])
    saved = tmp_path / "trial.keras"
    res = ok_json("model", "text", "--save", str(saved), "--storage", url)
    assert res["trial"] == best["number"] and res["epoch"] == best["extra"]["best_epoch"]
    # the trial's own weights: re-scored as the search scored them, exactly its value
    assert res["val_accuracy"] == res["recorded_val_accuracy"] == best["value"]
    assert res["validation_examples"] == 24 and res["input"] == "text"
    assert 0.0 <= res["saved_val_accuracy"] <= 1.0
    assert res["param_count"] == best["param_count"]

    # every checkpoint folder kept holds the best epoch (besides the newest)
    root = Path(url.removeprefix("sqlite:///") + ".rnnsearch")
    lineages = sorted(root.glob("*/checkpoints/lineage-*"))
    assert [p.name for p in lineages] == [f"lineage-{best['number']:05d}"]
    epochs = {p.name for p in lineages[0].glob("epoch-*")}
    assert f"epoch-{best['extra']['best_epoch']:04d}" in epochs and "epoch-0002" in epochs

    # the other trial's checkpoints were dropped (--keep-checkpoints 1): one line
    other = next(t for t in trials if t["number"] != best["number"])
    line = refused("model", "text", "--trial", str(other["number"]), "--save",
                   str(tmp_path / "other.keras"), "--storage", url)  # fmt: skip
    assert f"trial {other['number']}: the checkpoint of its best epoch" in line
    assert "was not kept" in line and not (tmp_path / "other.keras").exists()
    # a kept checkpoint deleted by hand is named as missing, not as "not kept"
    moved = tmp_path / "moved-away"
    lineages[0].rename(moved)
    try:
        line = refused("model", "text", "--save", str(tmp_path / "gone.keras"), "--storage", url)
    finally:
        moved.rename(lineages[0])
    assert f"{lineages[0]}/epoch-{best['extra']['best_epoch']:04d} was kept by the study" in line
    assert "moved or deleted outside rnnsearch" in line

    # the saved model predicts the validation reviews alone as it scored them
    import keras

    model = keras.saving.load_model(saved)
    assert model.get_layer("classifier").count_params() == best["param_count"]


def test_export_model_serves_the_same_predictions(text_study, tmp_path: Path):
    out = tmp_path / "served"
    res = ok_json("export-model", str(text_study["saved"]), "--out", str(out))
    assert res["input"] == "text" and res["max_difference"] < 1e-5
    assert json.loads((out / "assets.extra" / "classes.json").read_text()) == ["0", "1"]
    import keras
    import tensorflow as tf

    texts, _ = _test_rows(text_study["csv"])
    model = keras.saving.load_model(text_study["saved"])
    served = tf.saved_model.load(str(out))
    got = served.serve(tf.constant(texts[:8])).numpy()
    assert np.abs(got - model.predict(tf.constant(texts[:8]), verbose=0)).max() < 1e-5
    # an existing folder with files is refused, untouched
    line = refused("export-model", str(text_study["saved"]), "--out", str(out))
    assert "--out" in line and "expected a new or empty folder" in line


def test_bad_input_is_one_line(text_study, tmp_path: Path):
    saved = str(text_study["saved"])
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "words.csv").write_text("text,label\nlovely,pos\nawful,neg\n")
    (inputs / "header.csv").write_text("text,label\n")
    (inputs / "split.csv").write_text("text,label,split\nlovely,1,test\nawful,0,tset\n")
    cases = [
        # labels the model was not trained on scored accuracy 0 silently
        (["predict", saved, "--data", str(inputs / "words.csv")],
         "labels 'neg', 'pos' are not among the model's classes (0, 1)"),
        (["predict", saved, "--data", str(inputs / "header.csv")], "header.csv: no data rows"),
        # an unknown split value was skipped silently (run refuses it)
        (["predict", saved, "--data", str(inputs / "split.csv"), "--split", "test"],
         "row 3: split column 'split' holds 'tset'"),
        (["predict", str(tmp_path / "missing.keras"), "--text", "x"], "MODEL"),
        (["predict", str(junk), "--text", "x"], "junk.keras: not a Keras model file"),
        (["predict", saved], "--data or --text"),
        (["predict", saved, "--text", "x", "--data", str(text_study["csv"])], "--data or --text"),
        (["predict", saved, "--data", str(tmp_path / "none.csv")], "no such file"),
        (["predict", saved, "--data", str(text_study["csv"]), "--text-col", "body"], "'body'"),
        (["predict", saved, "--text", "x", "--out", str(tmp_path / "no" / "p.csv")], "--out"),
        (["predict", saved, "--text", "x", "--out", saved], "that is the model itself"),
        (["predict", saved, "--data", str(text_study["csv"]), "--out", str(text_study["csv"])],
         "that is the --data file itself"),
        (["predict", saved, "--data", str(IMDB_CSV.with_name("imdb.npz"))],
         "IMDB word ids fit only models of studies on Keras' IMDB file"),
        (["export-model", saved, "--out", str(junk)], "expected a new or empty folder"),
        (["model", "text", "--save", str(tmp_path / "m.txt"), "--storage", text_study["url"]],
         "--save"),
        (["model", "text", "--trial", "99", "--save", str(tmp_path / "m.keras"), "--storage",
          text_study["url"]], "--trial 99"),
    ]  # fmt: skip
    for args, names in cases:
        assert names in refused(*args), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "junk.keras"]


def test_numeric_model_takes_raw_sequences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Raw (unstandardised) sequences of different lengths in, NaN rows as padding: the
    recorded test accuracy exactly, through `predict --data` and through the model itself."""
    monkeypatch.setenv("RNNSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_SOURCES", {})
    npz = make_numeric(tmp_path / "seq.npz", n=300, seed=1)
    space = tmp_path / "space.toml"
    space.write_text(NUMERIC_SPACE)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    ok_json(
        "run", "--study", "num", "--space", str(space), "--trials", "1", "--data", str(npz),
        "--max-epochs", "2", "--seed", "1", "--storage", url, "--quiet",
    )  # fmt: skip
    saved = tmp_path / "num.keras"
    res = ok_json("retrain", "num", "--epochs", "3", "--save", str(saved), "--storage", url)
    assert res["input"] == "sequences" and res["classes"] == ["0", "1", "2"]
    rows = ok_json("predict", str(saved), "--data", str(npz), "--split", "test")
    assert len(rows) == res["test_examples"] == 60
    assert np.mean([r["label"] == r["predicted"] for r in rows]) == res["test_accuracy"]

    import keras

    with np.load(npz, allow_pickle=True) as f:  # the test's own file of float arrays
        xs, ys = list(f["x_test"]), f["y_test"]
    model = keras.saving.load_model(saved)
    width = max(len(x) for x in xs)
    batch = np.full((len(xs), width, 3), np.nan)
    for i, x in enumerate(xs):
        batch[i, : len(x)] = x
    probs = model.predict(batch, verbose=0)
    assert float((probs.argmax(1) == ys).mean()) == res["test_accuracy"]
    alone = model.predict(np.asarray(xs[0])[None], verbose=0)
    assert np.abs(alone - probs[:1]).max() < 1e-5

    # NaN is the saved model's padding marker: data holding NaN (or inf) is refused, not
    # scored as padding
    for bad in (np.nan, np.inf):
        broken = tmp_path / "broken.npz"
        x_bad = np.array(xs, dtype=object)
        x_bad[0] = np.where(np.arange(len(xs[0]))[:, None] == 0, bad, xs[0])
        np.savez(broken, x_train=x_bad, y_train=ys)
        message = refused("predict", str(saved), "--data", str(broken))
        assert "broken.npz: x_train holds NaN or infinite values" in message, message


@pytest.mark.parametrize(
    ("cell", "head", "bidirectional", "padding"),
    [("gru", "max", True, "pre"), ("lstm", "average", False, "pre"),
     ("jordan", "last", False, "post"), ("simple", "average", True, "post")],
)  # fmt: skip
def test_masked_network_scores_a_row_as_it_does_alone(cell, head, bidirectional, padding):
    """No training: an untrained network of each head, cut and padded by SequenceWindow, gives
    a row the probabilities it gets alone, whatever the batch; an empty row stays finite."""
    import keras

    from search.data import InputSpec
    from search.model import build_model
    from search.serving_layers import SequenceWindow

    config = {
        "cell": cell, "units": 5, "layers": 2, "bidirectional": bidirectional,
        "merge_mode": "concat", "activation": "tanh", "dropout": 0.0, "recurrent_dropout": 0.0,
        "head": head, "embedding_dim": 4, "vocab_size": 50, "maxlen": 6, "padding": padding,
        "optimizer": "adam", "learning_rate": 1e-3,
    }  # fmt: skip
    spec = InputSpec("tokens", 6, 2, vocab_size=50, variable_length=True)
    keras.utils.set_random_seed(0)
    network = build_model(config, spec, mask_padding=True)
    ids = keras.Input(shape=(None,), dtype="int32")
    model = keras.Model(ids, network(SequenceWindow(6, padding, fixed_length=False)(ids)))
    rows = [[3, 7, 9], [4, 5, 6, 7, 8, 9, 10, 11, 12], [], [13]]
    batch = np.zeros((len(rows), 9), dtype=np.int32)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    together = model.predict(batch, verbose=0)
    assert np.isfinite(together).all()
    for i, r in enumerate(rows):
        alone = model.predict(np.array([r or [0]], dtype=np.int32), verbose=0)
        assert np.abs(alone - together[i]).max() < 1e-5, (i, alone, together[i])
    # a row longer than maxlen keeps its last maxlen ids
    cut = model.predict(np.array([[5, 6, 7, 8, 9, 10, 11, 12]], dtype=np.int32), verbose=0)
    assert np.abs(cut - together[1]).max() < 1e-5
