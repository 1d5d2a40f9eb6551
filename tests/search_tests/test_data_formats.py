"""Every --data format with small generated files (and a slice of the shared IMDB CSV).

Text: CSV, CSV.gz, JSONL, folders; numeric: (N, T, F) and object-array .npz, long-format CSV.
Also: labels (binary, multi-class, names), the held-out test split, statistics and vocabulary
from the training part only, the disk cache, bucketing, and the model's input and output.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import search.data as data
from search.data import TEXT_OOV_ID, DataSource, load_source, validation_split
from search.datasets import cache
from search.datasets.batching import (
    bucket_widths,
    length_batches,
    length_batches_dataset,
    width_for,
)
from search.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[2]
IMDB_CSV = REPO.parent / "shared" / "data" / "imdb" / "imdb_reviews.csv.gz"

POS = ["good", "great", "fine", "superb", "lovely"]
NEG = ["bad", "awful", "poor", "dull", "boring"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own data cache and an empty in-process source table."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RNNSEARCH_CACHE", str(root))
    monkeypatch.setattr(data, "_SOURCES", {})
    return root


def review(label: int, rng: np.random.Generator, extra: str = "") -> str:
    words = rng.choice(POS if label else NEG, size=int(rng.integers(3, 12)))
    filler = rng.choice(["the", "film", "was", "a", "plot"], size=4)
    return " ".join([*filler, *words, extra]).strip()


def text_rows(n: int, seed: int = 0, split: bool = True) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        row = {"id": i, "label": label, "text": review(label, rng)}
        if split:
            row["split"] = "test" if i % 5 == 0 else "train"
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    fields = fields or list(rows[0])
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


CFG = {"vocab_size": 50, "maxlen": 12, "padding": "pre"}


def test_csv_with_split_column_tokenises_with_a_vocabulary_of_the_training_part(tmp_path):
    rows = text_rows(100)
    # A word only in test rows must not enter the vocabulary.
    for r in rows:
        if r["split"] == "test":
            r["text"] += " zebra"
    path = write_csv(tmp_path / "reviews.csv", rows)
    src = load_source(str(path))
    assert src.description["format"] == "text-csv"
    assert src.description["split_col_used"] == "split"
    assert src.description["test_split"] == "file"
    assert (len(src.train), len(src.test)) == (80, 20)
    assert src.kind == "tokens" and src.num_classes == 2 and src.oov_id == TEXT_OOV_ID
    assert src.vocabulary[:2] == ["", "[UNK]"]
    assert "zebra" not in src.vocabulary and "good" in src.vocabulary
    # zebra became the out-of-vocabulary id in every test row
    assert (src.test.tokens == TEXT_OOV_ID).sum() == 20
    prepared = src.prepare(CFG)
    assert prepared.x_train.shape == (64, 12) and prepared.x_val.shape == (16, 12)
    assert prepared.x_train.max() < 50
    assert prepared.spec.kind == "tokens" and prepared.spec.vocab_size == 50
    assert ((prepared.len_train >= 7) & (prepared.len_train <= 12)).all()


def test_validation_words_stay_out_of_the_vocabulary(tmp_path):
    rows = text_rows(100, split=False)
    labels = np.array([r["label"] for r in rows])
    # Find the rows that end up in validation (after the held-out test) and mark them.
    n_test = 20
    test_idx = np.sort(
        data.stratified_indices(labels, n_test, np.random.default_rng(data.TEST_SEED))
    )
    keep = np.setdiff1d(np.arange(100), test_idx)
    _, val = validation_split(labels[keep])
    for i in keep[val]:
        rows[i]["text"] += " walrus"
    src = load_source(str(write_csv(tmp_path / "r.csv", rows)))
    assert src.description["test_split"] == "held-out"
    assert "walrus" not in src.vocabulary


def test_csv_gz_with_own_columns_and_class_names_holds_out_a_test_split(tmp_path):
    rng = np.random.default_rng(1)
    rows = [
        {"review": review(i % 2, rng), "sentiment": "pos" if i % 2 else "neg"} for i in range(50)
    ]
    path = write_csv(tmp_path / "reviews.csv.gz", rows)
    src = load_source(str(path), options={"text_col": "review", "label_col": "sentiment"})
    d = src.description
    assert d["format"] == "text-csv" and d["classes"] == ["neg", "pos"]
    assert d["test_split"] == "held-out" and d["test_seed"] == data.TEST_SEED
    assert d["test_fraction"] == data.TEST_FRACTION
    assert (len(src.train), len(src.test)) == (40, 10)
    assert sorted(np.bincount(src.test.labels)) == [5, 5]
    assert d["options"]["text_col"] == "review"


def test_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark; it is not part of the column's name."""
    rng = np.random.default_rng(3)
    lines = ["text,label"] + [f"{review(i % 2, rng)},{i % 2}" for i in range(40)]
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))
    src = load_source(str(path))
    assert src.description["format"] == "text-csv"
    assert len(src.train) + len(src.test) == 40


def test_jsonl_multiclass_with_split(tmp_path):
    rng = np.random.default_rng(2)
    words = {"sports": "ball goal", "food": "bread soup", "music": "song drum"}
    lines = []
    for i in range(60):
        topic = list(words)[i % 3]
        lines.append(
            json.dumps(
                {
                    "body": f"{words[topic]} {rng.integers(100)}",
                    "topic": topic,
                    "part": "test" if i >= 45 else "train",
                }
            )
        )
    path = tmp_path / "topics.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    src = load_source(
        str(path), options={"text_col": "body", "label_col": "topic", "split_col": "part"}
    )
    assert src.description["format"] == "text-jsonl"
    assert src.num_classes == 3 and src.classes == ["food", "music", "sports"]
    assert (len(src.train), len(src.test)) == (45, 15)
    assert src.prepare(CFG).spec.num_classes == 3


def make_folder(root: Path, with_test: bool = True) -> Path:
    rng = np.random.default_rng(3)
    for split, n in (("train", 20), ("test", 6)) if with_test else (("train", 25),):
        for label in ("neg", "pos"):
            d = root / split / label
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i}.txt").write_text(review(label == "pos", rng), encoding="utf-8")
    return root


def test_folder_with_train_and_test(tmp_path):
    src = load_source(str(make_folder(tmp_path / "reviews")))
    assert src.description["format"] == "text-folder"
    assert src.classes == ["neg", "pos"]
    assert (len(src.train), len(src.test)) == (40, 12)
    assert src.description["test_split"] == "file"


def test_folder_without_test_holds_one_out(tmp_path):
    src = load_source(str(make_folder(tmp_path / "reviews", with_test=False)))
    assert src.description["test_split"] == "held-out"
    assert (len(src.train), len(src.test)) == (40, 10)


def test_numeric_npz_standardised_with_training_statistics_only(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, size=(100, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=100)
    x_test = rng.normal(50.0, 2.0, size=(20, 8, 2)).astype(np.float32)  # far from train
    path = tmp_path / "num.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x_test, y_test=rng.integers(0, 3, size=20))
    src = load_source(str(path))
    assert src.description["format"] == "numeric-npz" and src.kind == "numeric"
    assert src.features == 2 and src.num_classes == 3
    fit_idx, val_idx = src.split()
    fit_part = src.train.take(fit_idx).tokens
    np.testing.assert_allclose(fit_part.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(fit_part.std(axis=0), 1.0, atol=1e-4)
    # test data used the training statistics: still far away, not re-centred
    assert src.test.tokens.mean() > 10
    prepared = src.prepare({"maxlen": 200, "padding": "pre", "vocab_size": 10})
    assert prepared.x_train.shape == (80, 8, 2)  # maxlen is capped at the longest sequence
    assert prepared.spec.kind == "numeric" and prepared.spec.features == 2
    assert prepared.spec.vocab_size is None


def test_numeric_object_arrays_of_varying_length_are_padded_and_masked(tmp_path):
    rng = np.random.default_rng(5)
    lengths = rng.integers(2, 9, size=40)
    xs = np.empty(40, dtype=object)
    for i, n in enumerate(lengths):
        xs[i] = rng.normal(size=(n, 3))
    lengths[0] = 4
    xs[0] = np.zeros((4, 3))  # an all-zero real step must survive standardisation unmasked
    path = tmp_path / "ragged.npz"
    np.savez(path, x_train=xs, y_train=np.arange(40) % 2)
    src = load_source(str(path))
    assert src.description["test_split"] == "held-out"
    np.testing.assert_array_equal(
        np.sort(np.r_[src.train.lengths, src.test.lengths]), np.sort(lengths)
    )
    prepared = src.prepare({"maxlen": 6, "padding": "post", "vocab_size": 1})
    assert prepared.x_train.shape[1:] == (6, 3)
    for row, n in zip(prepared.x_train, prepared.len_train, strict=True):
        assert n == min(n, 6)
        assert (np.abs(row[:n]).sum(axis=1) > 0).all()  # real steps are never all zero
        assert (row[n:] == 0).all()  # padding is zero: the Masking layer drops it
    assert (prepared.len_train <= 6).all()


def test_long_format_csv(tmp_path):
    rng = np.random.default_rng(6)
    rows = []
    for seq in range(30):
        label = seq % 3
        for step in range(int(rng.integers(3, 7))):
            rows.append(
                {
                    "sequence_id": f"s{seq}",
                    "step": step,
                    "a": rng.normal() + label,
                    "b": rng.normal(),
                    "label": label,
                }
            )
    rng.shuffle(rows)  # steps out of order: they are sorted by `step`
    path = write_csv(tmp_path / "long.csv", rows, ["sequence_id", "step", "a", "b", "label"])
    src = load_source(str(path))
    assert src.description["format"] == "long-csv"
    assert src.description["feature_names"] == ["a", "b"]
    assert src.features == 2 and src.num_classes == 3
    assert len(src.train) + len(src.test) == 30


def imdb_slice(path: Path, per_class: int = 60, test_per_class: int = 15) -> Path:
    """The first reviews of each (split, label) of the shared IMDB CSV, as a small CSV.gz."""
    if not IMDB_CSV.is_file():
        pytest.fail(f"the shared IMDB CSV is missing: {IMDB_CSV}")
    want = {
        ("train", "0"): per_class,
        ("train", "1"): per_class,
        ("test", "0"): test_per_class,
        ("test", "1"): test_per_class,
    }
    got: list[dict] = []
    csv.field_size_limit(2**31 - 1)
    with gzip.open(IMDB_CSV, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames
        for row in reader:
            key = (row["split"], row["label"])
            if want.get(key, 0) > 0:
                want[key] -= 1
                got.append(row)
            if not any(want.values()):
                break
    return write_csv(path, got, fields)


@pytest.fixture(scope="module")
def imdb_csv_slice(tmp_path_factory) -> Path:
    return imdb_slice(tmp_path_factory.mktemp("imdb") / "imdb_slice.csv.gz")


def test_slice_of_the_shared_imdb_csv(imdb_csv_slice: Path):
    src = load_source(str(imdb_csv_slice), options={"split_col": "split"})
    assert (len(src.train), len(src.test)) == (120, 30)
    assert src.classes == [0, 1] and src.num_classes == 2
    assert {"the", "movie", "br"} <= set(src.vocabulary[:100])
    prepared = src.prepare({"vocab_size": 2000, "maxlen": 200, "padding": "pre"})
    assert prepared.x_train.shape == (96, 200)
    assert prepared.len_train.mean() > 100  # reviews are long; the padding is at the front
    assert (prepared.x_train[:, -1] > 0).all()


def test_cache_is_written_atomically_and_reused(tmp_path, own_cache: Path, monkeypatch):
    path = write_csv(tmp_path / "reviews.csv", text_rows(60))
    first = load_source(str(path))
    assert first.cache_status == "written"
    entries = list(own_cache.iterdir())
    assert [p.suffix for p in entries] == [".npz"]  # no temporary file left behind
    monkeypatch.setattr(data, "_SOURCES", {})
    again = load_source(str(path))
    assert again.cache_status == "hit"
    np.testing.assert_array_equal(again.train.tokens, first.train.tokens)
    assert again.vocabulary == first.vocabulary
    assert again.description["fingerprint"] == first.description["fingerprint"]
    # other preprocessing parameters or other data: another entry
    load_source(str(path), limit=40)
    write_csv(path, text_rows(60, seed=9))
    monkeypatch.setattr(data, "_SOURCES", {})  # a new process: the file is read again
    changed = load_source(str(path))
    assert changed.cache_status == "written"
    assert len(list(own_cache.iterdir())) == 3
    # bucketing does not change the prepared arrays: same entry
    assert load_source(str(path), options={"bucketing": False}).cache_status == "hit"


def test_a_cache_entry_is_not_served_to_the_same_bytes_under_another_format(
    tmp_path, own_cache: Path, monkeypatch
):
    """A plain CSV copied to `.csv.gz` is read as gzip, and refused, as it would be on a
    machine without the cache: the entry of the same bytes read as plain CSV is not reused."""
    plain = write_csv(tmp_path / "reviews.csv", text_rows(60))
    assert load_source(str(plain)).cache_status == "written"
    renamed = tmp_path / "reviews.csv.gz"
    renamed.write_bytes(plain.read_bytes())
    monkeypatch.setattr(data, "_SOURCES", {})
    with pytest.raises(DataError, match=r"reviews\.csv\.gz"):
        load_source(str(renamed))


def test_corrupt_cache_entry_is_rebuilt(tmp_path, own_cache: Path, monkeypatch):
    path = tmp_path / "num.npz"
    np.savez(
        path, x_train=np.ones((20, 3, 1)) * np.arange(20)[:, None, None], y_train=np.arange(20) % 2
    )
    load_source(str(path))
    [entry] = own_cache.iterdir()
    entry.write_bytes(b"not a zip file")
    monkeypatch.setattr(data, "_SOURCES", {})
    assert load_source(str(path)).cache_status == "written"
    assert cache.load(entry.stem) is not None


def test_cache_is_reused_by_another_process(tmp_path, own_cache: Path):
    path = tmp_path / "num.npz"
    rng = np.random.default_rng(7)
    np.savez(path, x_train=rng.normal(size=(30, 4, 2)), y_train=np.arange(30) % 3)
    assert load_source(str(path)).cache_status == "written"
    code = f"from search.data import load_source; print(load_source({str(path)!r}).cache_status)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "RNNSEARCH_CACHE": str(own_cache)},
        check=True,
        cwd=REPO,
    )
    assert out.stdout.strip() == "hit"


def test_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNSEARCH_CACHE", "off")
    path = tmp_path / "num.npz"
    np.savez(
        path, x_train=np.ones((20, 3, 1)) * np.arange(20)[:, None, None], y_train=np.arange(20) % 2
    )
    assert load_source(str(path)).cache_status == "written"
    assert cache.cache_dir() is None


def test_length_batches_cover_every_row_once_and_group_by_length():
    rng = np.random.default_rng(8)
    lengths = rng.integers(1, 500, size=1000)
    widths = bucket_widths(lengths, 500)
    # validation: all rows sorted, so a batch's own longest row pads it
    batches = length_batches(lengths, 32)
    assert len(batches) == 32  # ceil(1000 / 32)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert sum(int(lengths[b].max()) * len(b) for b in batches) < 1.1 * lengths.sum()
    # training: batches within buckets, so a batch costs its rows' width, not more; only the
    # few rows left over in a bucket (fewer than a batch each) move up to a wider one
    by_row = sum(width_for(int(n), widths) for n in lengths)
    for seed in (0, 1):
        batches = length_batches(lengths, 32, np.random.default_rng(seed), widths=widths)
        assert len(batches) == 32
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
        padded = sum(width_for(int(lengths[b].max()), widths) * len(b) for b in batches)
        assert by_row <= padded <= by_row + 31 * len(widths) * (widths[-1] - widths[0])
        assert padded < 1.2 * lengths.sum()  # 8 widths over lengths 1-499; maxlen: 2x
    # training batches come in a different order each epoch
    gen = np.random.default_rng(0)
    assert not np.array_equal(
        length_batches(lengths, 32, gen, widths=widths)[0],
        length_batches(lengths, 32, gen, widths=widths)[0],
    )


def test_length_batches_dataset_cuts_each_batch_to_its_smallest_fitting_width():
    lengths = np.array([3, 1, 5, 2, 4, 2])
    x = np.zeros((6, 8), dtype=np.int32)
    for i, n in enumerate(lengths):
        x[i, 8 - n :] = np.arange(1, n + 1)  # pre-padded
    y = np.arange(6)
    widths = (2, 4, 8)
    ds = length_batches_dataset(x, y, lengths, 2, "pre", seed=None, widths=widths)
    seen = []
    for xb, yb in ds.as_numpy_iterator():
        assert xb.shape[1] == min(w for w in widths if w >= lengths[yb].max())
        for row, i in zip(xb, yb, strict=True):
            assert list(row[row > 0]) == list(range(1, lengths[i] + 1))
        seen.extend(yb)
    assert sorted(seen) == list(range(6))
    post = np.zeros_like(x)
    for i, n in enumerate(lengths):
        post[i, :n] = np.arange(1, n + 1)
    batches = length_batches_dataset(post, y, lengths, 4, "post", seed=1, widths=widths)
    for xb, yb in batches.as_numpy_iterator():
        assert xb.shape[0] == 4  # training batches are full: the last one is filled up
        assert xb.shape[1] == min(w for w in widths if w >= lengths[yb].max())
        assert (xb[:, 0] == 1).all()


MODEL_CFG = {
    "cell": "gru",
    "units": 4,
    "bidirectional": False,
    "layers": 1,
    "head": "last",
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "embedding_dim": 4,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "batch_size": 16,
    "epochs": 1,
    "vocab_size": 50,
    "maxlen": 12,
    "padding": "pre",
}


class Recorder:
    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def epoch_done(self, model, epoch, metrics, seconds) -> bool:
        self.epochs.append(metrics)
        return False


@pytest.mark.parametrize("bucketing", [True, False])
def test_numeric_multiclass_model_trains_with_and_without_bucketing(tmp_path, bucketing):
    from search.model import build_model
    from search.train import fit

    rng = np.random.default_rng(9)
    xs = np.empty(60, dtype=object)
    for i in range(60):
        xs[i] = rng.normal(size=(int(rng.integers(2, 10)), 2))
    path = tmp_path / "n.npz"
    np.savez(path, x_train=xs, y_train=np.arange(60) % 3)
    src = load_source(str(path), options={"bucketing": bucketing})
    prepared = src.prepare(MODEL_CFG)
    assert prepared.bucketing is bucketing
    model = build_model(MODEL_CFG, prepared.spec)
    assert model.output_shape == (None, 3) and model.loss == "sparse_categorical_crossentropy"
    assert model.input_shape == ((None, None, 2) if bucketing else (None, prepared.spec.maxlen, 2))
    assert not any("embedding" in layer.name for layer in model.layers)
    rec = Recorder()
    fit(model, prepared, MODEL_CFG, rec)
    assert len(rec.epochs) == 1 and 0 <= rec.epochs[0]["val_accuracy"] <= 1


def test_binary_text_model_is_sigmoid_and_takes_any_length(tmp_path):
    from search.model import build_model
    from search.train import fit

    src = load_source(str(write_csv(tmp_path / "r.csv", text_rows(80))))
    prepared = src.prepare(MODEL_CFG)
    model = build_model(MODEL_CFG, prepared.spec)
    assert model.output_shape == (None, 1) and model.loss == "binary_crossentropy"
    assert model.input_shape == (None, None)
    rec = Recorder()
    fit(model, prepared, MODEL_CFG, rec)
    assert len(rec.epochs) == 1
    # the fixed-length arrays (retraining, export) go into the same model
    full = src.prepare_full(MODEL_CFG)
    assert model.predict(full.x_test, verbose=0).shape == (len(full.y_test), 1)


class _Req:
    study = "s"

    def __init__(self, **kw) -> None:
        for k in ("text_col", "label_col", "split_col", "bucketing"):
            setattr(self, k, kw.get(k))


class _Stored:
    def __init__(self, data: dict) -> None:
        self.data = data


def test_data_options_of_new_and_existing_studies():
    new = data.data_options(_Req(text_col="review"), None)
    assert new == {"text_col": "review", "label_col": "label", "split_col": None, "bucketing": True}
    stored = _Stored({"options": new})
    assert data.data_options(_Req(), stored) == new
    assert data.data_options(_Req(text_col="review"), stored) == new
    with pytest.raises(
        UsageError, match="--text-col body: study 's' was started with --text-col review"
    ):
        data.data_options(_Req(text_col="body"), stored)
    with pytest.raises(UsageError, match="--no-bucketing"):
        data.data_options(_Req(bucketing=False), stored)
    # a study from before data options: fixed-length padding, as it was run
    assert data.data_options(_Req(), _Stored({"source": "imdb"}))["bucketing"] is False


def test_imdb_npz_still_reads_as_keras_does(imdb_npz: Path):
    src = load_source(str(imdb_npz), limit=200)
    assert isinstance(src, DataSource) and src.description["format"] == "imdb-npz"
    assert (
        src.oov_id == data.IMDB_OOV_CHAR and (src.train.tokens[src.train.offsets[:-1]] == 1).all()
    )
    prepared = src.prepare({"vocab_size": 1000, "maxlen": 50, "padding": "pre"})
    assert prepared.x_train.max() < 1000 and prepared.spec.variable_length


def test_a_real_step_whose_standardised_features_are_all_zero_is_not_taken_for_padding():
    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = data._standardise(values, np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [data.ZERO_STEP_NUDGE, 0.0])
    np.testing.assert_allclose(out[1], [2.0, 2.0])
