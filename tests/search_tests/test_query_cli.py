"""best --where, trials --where, studies, report, retrain and export on one small real study.

The study (8 trials of tiny Elman/Jordan/LSTM models, forward or bidirectional, maxlen 20 or 40,
2 epochs on a 500-review slice) is built once for the module through the CLI, in-process.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from search.cli import app

STUDY = "cells"
SPACE = """
name = "tiny-cells"
description = "tiny Elman, Jordan and LSTM models for the query tests"

[dimensions]
cell = { choice = ["simple", "jordan", "lstm"] }
units = { low = 4, high = 8 }
bidirectional = { choice = [false, true] }
maxlen = { choice = [20, 40] }
learning_rate = { low = 3e-3, high = 3e-2, log = true }
vocab_size = 1000
embedding_dim = 8
batch_size = 32
"""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def ok_json(*args: str) -> Any:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def study(tmp_path_factory, imdb_npz: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("query")
    space = root / "tiny-cells.toml"
    space.write_text(SPACE)
    url = f"sqlite:///{root / 'study.db'}"
    result = invoke(
        "run", "--study", STUDY, "--space", str(space), "--engine", "optuna", "--trials", "8",
        "--data", str(imdb_npz), "--limit", "500", "--max-epochs", "2", "--seed", "3",
        "--storage", url, "--quiet", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    trials = ok_json("trials", STUDY, "--format", "json", "--storage", url)
    assert len(trials) == 8
    return {"url": url, "root": root, "trials": trials}


# -- best --where / trials --where --------------------------------------------------------

#: Each filter with the same condition written by hand in Python, for the hand count.
FILTERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("cell=lstm and bidirectional=true", lambda c: c["cell"] == "lstm" and c["bidirectional"]),
    ("bidirectional=false", lambda c: not c["bidirectional"]),
    ("maxlen = 20", lambda c: c["maxlen"] == 20),
    ("cell in (simple, jordan)", lambda c: c["cell"] in ("simple", "jordan")),
    ("cell != simple", lambda c: c["cell"] != "simple"),
    ("units >= 6", lambda c: c["units"] >= 6),
    ("units < 6 or maxlen > 30", lambda c: c["units"] < 6 or c["maxlen"] > 30),
    (
        "(cell = jordan or cell = 'lstm') and not bidirectional = true",
        lambda c: c["cell"] in ("jordan", "lstm") and not c["bidirectional"],
    ),
    ("learning_rate <= 0.01", lambda c: c["learning_rate"] <= 0.01),
]


@pytest.mark.parametrize(("where", "hand"), FILTERS, ids=[f for f, _ in FILTERS])
def test_best_where_agrees_with_a_hand_count(study, where: str, hand):
    expected = [t for t in study["trials"] if t["state"] == "complete" and hand(t["config"])]
    rows = ok_json(
        "best", STUDY, "--top", "100", "--where", where, "--format", "json",
        "--storage", study["url"],
    )  # fmt: skip
    assert sorted(r["number"] for r in rows) == sorted(t["number"] for t in expected)
    assert all(hand(r["config"]) for r in rows)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # sorted by the objective; ties go to fewer epochs, then shorter time
    keys = [(-r["value"], r["epochs"], r["duration_s"]) for r in rows]
    assert keys == sorted(keys)


def test_the_filters_split_the_study(study):
    """The hand counts above are not all trivially empty or full."""
    complete = [t for t in study["trials"] if t["state"] == "complete"]
    sizes = {sum(1 for t in complete if hand(t["config"])) for _, hand in FILTERS}
    assert len(sizes) > 1 and max(sizes) > 0


@pytest.mark.parametrize(("where", "hand"), FILTERS[:4], ids=[f for f, _ in FILTERS[:4]])
def test_trials_where_agrees_with_a_hand_count(study, where: str, hand):
    rows = ok_json("trials", STUDY, "--where", where, "--format", "json", "--storage", study["url"])
    assert [r["number"] for r in rows] == [
        t["number"] for t in study["trials"] if hand(t["config"])
    ]


def test_best_where_top_and_formats(study):
    url = study["url"]
    where = "cell in (simple, jordan, lstm)"
    top2 = ok_json("best", STUDY, "--top", "2", "--where", where, "-f", "json", "--storage", url)
    everything = ok_json("best", STUDY, "--top", "2", "-f", "json", "--storage", url)
    assert [r["number"] for r in top2] == [r["number"] for r in everything]
    result = invoke("best", STUDY, "--top", "100", "--where", "maxlen=40", "-f", "csv",
                    "--storage", url)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and all(r["maxlen"] == "40" for r in rows)
    assert list(rows[0])[:6] == [
        "rank", "trial", "state", "value", "epochs_trained", "duration_s"
    ]  # fmt: skip
    table = invoke("best", STUDY, "--where", "maxlen=40", "--storage", url)
    assert table.exit_code == 0 and "maxlen=40" in table.stdout


MALFORMED = [
    ("cell=lstm and", "expected a parameter name"),
    ("cell lstm", "expected an operator"),
    ("colour=red", "unknown parameter 'colour'"),
    ("units=many", "expected a number for units"),
    ("bidirectional=yes", "expected true or false"),
    ("cell=lsmt", "expected one of simple, jordan, lstm, gru"),
    ("cell > lstm", "not numeric"),
    ("(cell=lstm", "expected ')'"),
    ("cell in lstm", "expected '('"),
    ("units>4; drop table trials", "unexpected character ';'"),
    ("", "empty filter"),
]


@pytest.mark.parametrize(("where", "expected"), MALFORMED, ids=[w or "empty" for w, _ in MALFORMED])
@pytest.mark.parametrize("command", ["best", "trials"])
def test_malformed_filter_exits_2_with_one_line(study, command: str, where: str, expected: str):
    result = invoke(command, STUDY, "--where", where, "--storage", study["url"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"rnnsearch: error: --where {where!r}:")
    assert expected in line
    assert result.stdout == ""


# -- studies ----------------------------------------------------------------------------


def test_studies_shows_engine_space_data_counts_and_best(study):
    [row] = ok_json("studies", "--format", "json", "--storage", study["url"])
    assert row["name"] == STUDY and row["engine"] == "optuna" and row["space"] == "tiny-cells"
    assert row["data"].endswith("imdb.npz") and row["limit"] == 500 and row["seed"] == 3
    counts: dict[str, int] = {}
    for t in study["trials"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    assert {k: v for k, v in row["counts"].items() if v} == counts
    best = max(t["value"] for t in study["trials"] if t["state"] == "complete")
    assert row["best_value"] == pytest.approx(best)
    table = invoke("studies", "--storage", study["url"]).stdout
    assert "tiny-cells" in table and "complete" in table and "limit" in table
    rows = list(csv.DictReader(io.StringIO(invoke("studies", "-f", "csv", "--storage",
                                                   study["url"]).stdout)))  # fmt: skip
    assert rows[0]["study"] == STUDY and rows[0]["limit"] == "500"
    assert int(rows[0]["complete"]) == counts.get("complete", 0)


# -- report -----------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Rows of the table with id=comparison, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.rows: list[list[str]] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == "comparison":
            self.inside = True
        elif tag == "tr" and self.inside:
            self.rows.append([])
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.rows:
            self.rows[-1].append(data)


@pytest.fixture(scope="module")
def report(study) -> dict[str, Any]:
    out = study["root"] / "report"
    data = ok_json(
        "report", STUDY, "--out", str(out), "--format", "json", "--storage", study["url"]
    )
    return {"out": out, "json": data}


def _expected_groups(trials: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict]]:
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for t in trials:
        if t["state"] in ("complete", "pruned"):
            c = t["config"]
            key = (c["cell"], "bidirectional" if c["bidirectional"] else "forward", c["maxlen"])
            groups.setdefault(key, []).append(t)
    return groups


def test_report_comparison_matches_the_trials(study, report):
    groups = _expected_groups(study["trials"])
    rows = report["json"]["comparison"]
    assert {(r["cell"], r["direction"], r["maxlen"]) for r in rows} == set(groups)
    for r in rows:
        members = groups[(r["cell"], r["direction"], r["maxlen"])]
        assert r["trials"] == len(members)
        assert r["pruned"] == sum(1 for t in members if t["state"] == "pruned")
        best = max(members, key=lambda t: t["value"])
        assert r["best_val_accuracy"] == pytest.approx(best["value"])
        assert min(t["value"] for t in members) <= r["median_val_accuracy"] <= best["value"]
        assert r["mean_epoch_s"] > 0
        assert r["params_best"] == best["param_count"] and r["params_best"] > 0
    best_values = [r["best_val_accuracy"] for r in rows]
    assert best_values == sorted(best_values, reverse=True)


def test_report_writes_valid_png_images(report):
    import matplotlib.image as mpimg

    figures = report["json"]["figures"]
    assert {"comparison", "learning_curves", "history"} <= set(figures)
    for name, path in figures.items():
        p = Path(path)
        assert p.parent == report["out"] and p.suffix == ".png"
        raw = p.read_bytes()
        assert raw[:8] == PNG_SIGNATURE and len(raw) > 2000, name
        image = mpimg.imread(p)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, name
        assert image.shape[2] in (3, 4)
        assert float(image.std()) > 0.01, f"{name} is blank"


def test_report_html_holds_the_comparison_rows_and_inlined_figures(report):
    page = (report["out"] / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    parser = _Tables()
    parser.feed(page)
    header, *body = parser.rows
    assert header[:3] == ["cell", "direction", "maxlen"]
    expected = {(r["cell"], r["direction"], str(r["maxlen"])) for r in report["json"]["comparison"]}
    assert {(row[0], row[1], row[2]) for row in body} == expected
    assert len(body) == len(report["json"]["comparison"])
    # self-contained: every figure is inlined, nothing is fetched
    assert len(parser.images) == len(report["json"]["figures"])
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert 'src="http' not in page and "<link" not in page
    assert "Parameter importances" in page and "Optimisation history" in page


def test_report_importances_or_a_note(report):
    data = report["json"]
    if data["importances"] is None:
        assert any("importances" in n for n in data["notes"])
    else:
        assert set(data["importances"]) <= {"cell", "units", "bidirectional", "maxlen",
                                            "learning_rate"}  # fmt: skip
        assert sum(data["importances"].values()) == pytest.approx(1.0, abs=1e-6)
        assert "importances" in data["figures"]


def test_report_table_output(study, tmp_path: Path):
    result = invoke("report", STUDY, "--out", str(tmp_path / "r"), "--storage", study["url"])
    assert result.exit_code == 0, result.output
    assert "best_val_accuracy" in result.stdout and "index.html" in result.stdout


def test_report_on_a_study_too_small_for_importances(tmp_path: Path):
    """A plain-Optuna study with one complete trial: a page with a note, no importances."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    url = f"sqlite:///{tmp_path / 'small.db'}"
    small = optuna.create_study(study_name="small", storage=url, direction="maximize")
    small.add_trial(
        optuna.trial.create_trial(
            params={"cell": "gru", "units": 5},
            distributions={
                "cell": CategoricalDistribution(["gru", "lstm"]),
                "units": IntDistribution(4, 8),
            },
            value=0.6,
        )
    )
    out = tmp_path / "r"
    data = ok_json("report", "small", "--out", str(out), "--format", "json", "--storage", url)
    assert data["importances"] is None
    assert any("at least 2 complete trials" in n for n in data["notes"])
    assert [(r["cell"], r["trials"]) for r in data["comparison"]] == [("gru", 1)]
    page = (out / "index.html").read_text()
    assert "at least 2 complete trials" in page
    assert not (out / "importances.png").exists()


def test_missing_parameter_counts_are_computed_from_the_configuration(study):
    """Trials recorded without a parameter count get one by building their model."""
    from search.report import missing_param_counts
    from storage import StudyDatabase, TrialRecord

    data = StudyDatabase(study["url"], create=False).study_config(STUDY).data
    t = next(t for t in study["trials"] if t["state"] == "complete")
    import dataclasses

    fields = {f.name for f in dataclasses.fields(TrialRecord)}
    own = {k: v for k, v in t.items() if k in fields}  # JSON rows carry derived keys too
    rec = TrialRecord(**{**own, "param_count": None, "started_at": None, "finished_at": None})
    assert missing_param_counts([rec], data) == {t["trial_id"]: t["param_count"]}
    assert missing_param_counts([rec], None) == {}


def test_report_on_missing_study_exits_2(study, tmp_path: Path):
    result = invoke("report", "nope", "--out", str(tmp_path / "r"), "--storage", study["url"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # a refused command creates nothing


# -- export -----------------------------------------------------------------------------


def test_export_json_has_every_trial_with_params_metrics_and_curves(study, tmp_path: Path):
    out = tmp_path / "trials.json"
    result = invoke("export", STUDY, "--format", "json", "--out", str(out),
                    "--storage", study["url"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    by_number = {t["number"]: t for t in study["trials"]}
    assert [r["trial"] for r in rows] == sorted(by_number)
    for r in rows:
        t = by_number[r["trial"]]
        assert r["params"] == t["params"] and r["config"] == t["config"]
        assert r["engine"] == "optuna" and r["extra"] == t["extra"]
        assert r["state"] == t["state"] and r["epochs_trained"] == t["epochs"]
        assert len(r["curve"]) == t["epochs"]
        assert [e["epoch"] for e in r["curve"]] == list(range(1, t["epochs"] + 1))
        assert r["final_val_accuracy"] == r["curve"][-1]["val_accuracy"]
        if t["state"] == "complete":
            assert r["best_val_accuracy"] == pytest.approx(t["value"])
        assert r["param_count"] == t["param_count"]


def test_export_csv_to_stdout(study):
    result = invoke("export", STUDY, "--format", "csv", "--storage", study["url"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(study["trials"])
    for r, t in zip(rows, study["trials"], strict=True):
        assert int(r["trial"]) == t["number"] and r["state"] == t["state"]
        assert r["cell"] == t["config"]["cell"] and int(r["maxlen"]) == t["config"]["maxlen"]
        assert r["bidirectional"] == str(t["config"]["bidirectional"])
        assert float(r["final_loss"]) > 0 and float(r["mean_epoch_s"]) > 0


# -- retrain (last: it records test metrics into the study) -------------------------------


def test_retrain_saves_a_model_that_loads_and_predicts(study, tmp_path: Path, imdb_npz: Path):
    url = study["url"]
    best = ok_json("best", STUDY, "--format", "json", "--storage", url)[0]
    path = tmp_path / "winner.keras"
    res = ok_json(
        "retrain", STUDY, "--epochs", "1", "--limit", "500", "--save", str(path),
        "--format", "json", "--storage", url,
    )  # fmt: skip
    assert res["trial"] == best["number"] and res["epochs"] == 1
    assert res["train_examples"] == 500 and res["test_examples"] > 0
    assert 0.0 <= res["test_accuracy"] <= 1.0 and res["test_loss"] > 0
    assert path.is_file()

    import keras
    import numpy as np

    import search.model  # noqa: F401 - registers the Jordan cell for loading
    from search.predict import Examples, predict, read_examples

    # imdb_word_index.json lies beside the shared imdb.npz: the saved model reads text
    assert res["input"] == "text" and res["classes"] == ["0", "1"]
    model = keras.saving.load_model(path)
    import tensorflow as tf

    reviews = ["A wonderful film, I loved it.", "Dull, far too long.", "", "br br"]
    pred = model.predict(tf.constant(reviews), verbose=0)
    assert pred.shape == (4, 2) and np.allclose(pred.sum(axis=1), 1.0, atol=1e-6)
    assert model.get_layer("classifier").count_params() == res["param_count"]
    assert res["param_count"] == best["param_count"]

    # The file's network on the file's word ids (the IMDB test split): exactly the recorded
    # test accuracy, each review scored as it is alone.
    test = read_examples(str(imdb_npz), split="test")
    assert len(test.items) == res["test_examples"]
    scored = predict(model, Examples("token_ids", test.items, test.labels), batch_size=512)
    assert scored.accuracy == res["test_accuracy"]

    shown = ok_json("best", STUDY, "--with-test", "--format", "json", "--storage", url)[0]
    assert shown["test_accuracy"] == pytest.approx(res["test_accuracy"])
    assert shown["test_loss"] == pytest.approx(res["test_loss"])
    assert shown["extra"]["retrain"]["epochs"] == 1
    table = invoke("best", STUDY, "--with-test", "--storage", url).stdout
    assert "test_accuracy" in table and f"{res['test_accuracy']:.4f}"[:5] in table


def test_retrain_that_diverges_records_and_saves_nothing(study, tmp_path: Path, monkeypatch):
    import keras

    import search.model

    real_build = search.model.build_model

    def nan_loss_model(config, spec, **options):
        model = real_build(config, spec, **options)
        model.compile(optimizer="sgd", loss=lambda y, p: keras.ops.mean(p) * float("nan"))
        return model

    monkeypatch.setattr(search.model, "build_model", nan_loss_model)
    url = study["url"]
    before = ok_json("trials", STUDY, "--format", "json", "--storage", url)
    path = tmp_path / "diverged.keras"
    result = invoke("retrain", STUDY, "--trial", "1", "--epochs", "1", "--limit", "200",
                    "--save", str(path), "--format", "json", "--storage", url)  # fmt: skip
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert "retraining trial 1 diverged at epoch 1" in line and "nothing was recorded" in line
    assert result.stdout == ""
    assert not path.exists()
    after = ok_json("trials", STUDY, "--format", "json", "--storage", url)
    assert [(t["test_loss"], t["test_accuracy"]) for t in after] == [
        (t["test_loss"], t["test_accuracy"]) for t in before
    ]


def test_retrain_refuses_bad_arguments(study, tmp_path: Path):
    url = study["url"]
    for args, expected in (
        (["--trial", "99"], "--trial 99: study 'cells' has trials 0-7"),
        (["--save", str(tmp_path / "model.h5")], "ending in .keras"),
        (["--save", str(tmp_path / "no" / "m.keras")], "does not exist"),
    ):
        result = invoke("retrain", STUDY, *args, "--storage", url)
        assert result.exit_code == 2, (args, result.output)
        [line] = result.stderr.strip().splitlines()
        assert expected in line


def test_retrain_refuses_a_bad_word_index_before_training(study, tmp_path: Path, monkeypatch):
    """The word index is read when the raw-input model is built, after training: a missing or
    unreadable one must be refused first, not after minutes of training."""
    import search.model

    def no_training(*args, **kwargs):
        raise AssertionError("retrain built a model before checking --word-index")

    monkeypatch.setattr(search.model, "build_model", no_training)
    (tmp_path / "words.json").write_text("[1, 2]")
    for path, expected in (
        (tmp_path / "none.json", "--word-index"),
        (tmp_path / "words.json", "expected a JSON object of word -> rank"),
    ):
        result = invoke("retrain", STUDY, "--word-index", str(path), "--storage", study["url"])
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert expected in line and str(path) in line


def test_help_stays_light():
    """The CLI module imports no TensorFlow, Optuna or matplotlib at import time."""
    code = (
        "import sys, search.cli, search.report, search.export, search.retrain, storage.filters;"
        "import search.predict, search.trial_model, search.serving;"
        "heavy = [m for m in ('tensorflow', 'optuna', 'matplotlib', 'keras') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_interrupted_report_leaves_no_folder_and_an_old_one_intact(
    study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Ctrl-C while the figures are drawn: no half-written folder (before: a folder without
    index.html), and a report written before keeps its files."""
    import search.report as report_module

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "plot_history", interrupted)
    fresh = tmp_path / "fresh"
    result = invoke("report", STUDY, "--out", str(fresh), "--storage", study["url"])
    assert result.exit_code == 130 and "interrupted" in result.stderr, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "index.html").write_text("the report of yesterday")
    again = invoke("report", STUDY, "--out", str(old), "--storage", study["url"])
    assert again.exit_code == 130, again.output
    assert [p.name for p in old.iterdir()] == ["index.html"]
    assert (old / "index.html").read_text() == "the report of yesterday"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
