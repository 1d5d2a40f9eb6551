"""``rnnsearch predict`` and ``rnnsearch export-model``: apply and export a saved model.

A model saved by ``retrain --save`` or ``model --save`` takes raw input (:mod:`search.serving`).
``predict`` reads what ``run`` reads (text tables and folders, Keras' IMDB file, numeric .npz
and long-format CSV; labels optional for text tables) or texts from the command line, and gives
each example's most probable class (``predicted``) and every class's probability. Examples are
batched by length for speed; the saved model masks padding, so a prediction does not depend on
its batch.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import DataError, UsageError
from search.validation import check_parent_folder

SPLITS = ("all", "train", "test")


@dataclass(frozen=True)
class Examples:
    """What to predict: texts, IMDB word-id sequences or (T_i, F) numeric arrays, in order."""

    kind: str  # "text", "token_ids" or "sequences"
    items: list[Any]
    #: The true class names when the input carries labels (else None).
    labels: list[str] | None = None
    #: Where they came from, for messages: ``--text`` or ``--data FILE``.
    origin: str = "--data"


@dataclass(frozen=True)
class Predictions:
    classes: list[str]
    probabilities: np.ndarray  # (N, K)
    labels: list[str] | None

    @property
    def predicted(self) -> list[str]:
        return [self.classes[i] for i in np.argmax(self.probabilities, axis=1)]

    @property
    def accuracy(self) -> float | None:
        if self.labels is None or not self.labels:
            return None
        return float(np.mean([p == t for p, t in zip(self.predicted, self.labels, strict=True)]))

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        headers = ["index", *(["label"] if self.labels is not None else []), "predicted"]
        headers += [f"p_{c}" for c in self.classes]
        out = []
        for i, (pred, probs) in enumerate(zip(self.predicted, self.probabilities, strict=True)):
            label = [self.labels[i]] if self.labels is not None else []
            out.append([i, *label, pred, *[float(p) for p in probs]])
        return headers, out

    def records(self) -> list[dict[str, Any]]:
        out = []
        for i, (pred, probs) in enumerate(zip(self.predicted, self.probabilities, strict=True)):
            rec: dict[str, Any] = {"index": i}
            if self.labels is not None:
                rec["label"] = self.labels[i]
            rec["predicted"] = pred
            rec["probabilities"] = {c: float(p) for c, p in zip(self.classes, probs, strict=True)}
            out.append(rec)
        return out


def load_saved(path_text: str) -> Any:
    """A model written by ``retrain --save`` or ``model --save`` (one line if it is not one)."""
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(
            f"MODEL {path_text}: no such file; expected a .keras file saved by "
            "`rnnsearch retrain --save` or `rnnsearch model --save`"
        )
    if path.suffix != ".keras":
        raise UsageError(f"MODEL {path_text}: expected a .keras file, got {path.suffix or 'none'}")
    import zipfile

    try:
        archive = zipfile.is_zipfile(path)
    except OSError as exc:
        raise UsageError(f"MODEL {path_text}: cannot read: {exc.strerror or exc}") from None
    if not archive:
        # Keras would say "File not found" of a file that is there
        raise UsageError(
            f"MODEL {path_text}: not a Keras model file (a .keras file is a zip archive); "
            "expected a model saved by `rnnsearch retrain --save` or `rnnsearch model --save`"
        )
    from search import tfenv

    tfenv.quiet_import()
    import keras

    import search.model  # noqa: F401 - registers rnnsearch's layers
    from search import serving

    try:
        # safe_mode (the default) refuses to deserialise Python lambdas: no file runs code.
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        model.get_layer(serving.CLASS_LAYER)
        model.get_layer(serving.CLASSIFIER)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a model we can apply
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(
            f"MODEL {path_text}: not a raw-input model of rnnsearch (saved by `retrain --save` "
            f"or `model --save`): {first}"
        ) from None
    return model


def _label_name(value: Any) -> str:
    from search.datasets.readers import _label_key

    try:
        key = _label_key(value)
    except ValueError:
        return str(value)
    return "" if key is None else str(key)


def _pick(parts: dict[str, tuple[list[Any], list[Any]]], split: str) -> tuple[list, list]:
    names = ["train", "test", "all"] if split == "all" else [split]
    items: list[Any] = []
    labels: list[Any] = []
    for name in names:
        if name in parts:
            items.extend(parts[name][0])
            labels.extend(parts[name][1])
    return items, labels


def _text_table(
    path: Path, text_col: str, label_col: str, split_col: str | None, split: str
) -> Examples:
    """Rows of a CSV/JSONL file; the label and split columns are optional here."""
    from search.datasets import readers

    if ".jsonl" in path.name or path.suffix == ".ndjson":
        rows = [row for _, row in readers._jsonl_rows(path)]
        header = list(rows[0]) if rows else []
        records = [[row.get(h) for h in header] for row in rows]
    else:
        header, reader = readers._csv_rows(path)
        try:
            records = [r for r in reader if r]
        except readers.READ_ERRORS as exc:
            raise DataError(f"{path}: cannot read as CSV: {exc}") from None
    if text_col not in header:
        raise DataError(
            f"{path}: no column {text_col!r} (columns: {', '.join(header)}); pass --text-col"
        )
    ti = header.index(text_col)
    li = header.index(label_col) if label_col in header else None
    used_split = split_col if split_col is not None else ("split" if "split" in header else None)
    if split != "all" and used_split not in header:
        raise UsageError(f"--split {split}: {path} has no split column (pass --split-col)")
    si = header.index(used_split) if split != "all" else None
    items, labels = [], []
    for n, rec in enumerate(records, start=2):
        if len(rec) != len(header):
            raise DataError(f"{path}: row {n} has {len(rec)} fields, the header {len(header)}")
        if si is not None and readers._split_of(rec[si], path, f"row {n}", used_split) != split:
            continue
        if not isinstance(rec[ti], str):
            raise DataError(f"{path}: row {n}: {text_col!r} is not a string")
        items.append(rec[ti])
        if li is not None:
            labels.append(_label_name(rec[li]))
    return Examples("text", items, labels if li is not None else None)


def read_examples(
    data: str,
    *,
    text_col: str = "text",
    label_col: str = "label",
    split_col: str | None = None,
    split: str = "all",
) -> Examples:
    """The examples of a data file or folder, in file order (train before test)."""
    from search.data import _detect_format, _resolve_path

    if split not in SPLITS:
        raise UsageError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    path = _resolve_path(data)
    examples = _read(path, _detect_format(path), text_col, label_col, split_col, split)
    if not examples.items:
        part = "" if split == "all" else f" in its {split} part"
        raise DataError(f"{data}: no data rows{part}; expected examples to predict")
    return Examples(examples.kind, examples.items, examples.labels, f"--data {data}")


def _read(
    path: Path, fmt: str, text_col: str, label_col: str, split_col: str | None, split: str
) -> Examples:
    from search.datasets import imdb, readers

    if fmt in ("text-csv", "text-jsonl"):
        return _text_table(path, text_col, label_col, split_col, split)
    if fmt == "text-folder":
        items, labels = _pick(readers.read_text_folder(path), split)
        return Examples("text", items, [_label_name(v) for v in labels])
    if fmt == "imdb-npz":
        (train, test) = imdb.read_imdb_npz(path)
        parts = {}
        for name, (tokens, offsets, ys) in (("train", train), ("test", test)):
            seqs = [tokens[offsets[i] : offsets[i + 1]] for i in range(len(ys))]
            parts[name] = (seqs, [int(v) for v in ys])
        items, labels = _pick(parts, split)
        return Examples("token_ids", items, [str(v) for v in labels])
    if fmt == "numeric-npz":
        items, labels = _pick(readers.read_numeric_npz(path), split)
    else:
        parts, _ = readers.read_long_csv(path, label_col, split_col)
        items, labels = _pick(parts, split)
    return Examples("sequences", items, [_label_name(v) for v in labels])


def _batches(lengths: list[int], size: int) -> list[np.ndarray]:
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def predict(model: Any, examples: Examples, batch_size: int = 256) -> Predictions:
    """Every example's class probabilities (batched by length; the order is the input's)."""
    import keras
    import tensorflow as tf

    from search import serving
    from search.serving_layers import IMDB_OOV_ID, VocabularyCap

    classes = serving.names_of(model)
    takes = serving.input_kind(model)
    runner = model
    if examples.kind == "token_ids" and takes == "text":
        layer_names = {layer.name for layer in model.layers}
        if "word_ids" not in layer_names:
            raise UsageError(
                f"{examples.origin}: IMDB word ids fit only models of studies on Keras' IMDB "
                "file; this model reads text with its own vocabulary (pass the reviews' text)"
            )
        # The file's network on word ids: the same window and network, without the text step.
        ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        x = VocabularyCap(model.get_layer("word_ids").vocab_size, IMDB_OOV_ID)(ids)
        x = model.get_layer(serving.WINDOW_LAYER)(x)
        x = model.get_layer(serving.CLASSIFIER)(x)
        runner = keras.Model(ids, model.get_layer(serving.CLASS_LAYER)(x))
    elif examples.kind != takes:
        what = {"text": "text", "token_ids": "IMDB word ids", "sequences": "numeric sequences"}
        raise UsageError(
            f"{examples.origin}: the model takes {what[takes]}; this input holds "
            f"{what[examples.kind]}"
        )
    unknown = sorted({label for label in examples.labels or [] if label and label not in classes})
    if unknown:
        raise DataError(
            f"{examples.origin}: labels {', '.join(map(repr, unknown[:5]))} are not among the "
            f"model's classes ({', '.join(classes)}); expected the classes it was trained on "
            "(or no label column)"
        )
    n = len(examples.items)
    probs = np.zeros((n, len(classes)), dtype=np.float32)
    if examples.kind == "text":
        lengths = [len(t) for t in examples.items]
    else:
        lengths = [len(s) for s in examples.items]
    for idx in _batches(lengths, batch_size):
        if examples.kind == "text":
            batch = tf.constant([examples.items[i] for i in idx], dtype=tf.string)
        elif examples.kind == "token_ids":
            width = max(1, max(lengths[i] for i in idx))
            batch = np.zeros((len(idx), width), dtype=np.int32)
            for row, i in enumerate(idx):
                batch[row, : lengths[i]] = examples.items[i]
        else:
            features = runner.inputs[0].shape[-1]
            width = max(1, max(lengths[i] for i in idx))
            batch = np.full((len(idx), width, features), np.nan, dtype=np.float64)
            for row, i in enumerate(idx):
                seq = np.asarray(examples.items[i], dtype=np.float64)
                if seq.ndim != 2 or seq.shape[1] != features:
                    raise DataError(
                        f"{examples.origin}: example {i} has "
                        f"{seq.shape[-1] if seq.ndim else 0} features per step; the model takes "
                        f"{features}"
                    )
                batch[row, : len(seq)] = seq
        probs[idx] = np.asarray(runner.predict_on_batch(batch))
    return Predictions(classes, probs, examples.labels)


def export_saved_model(model_path: str, out: str) -> dict[str, Any]:
    """Write a TensorFlow SavedModel (Keras' ``model.export``) for TF Serving, check that it
    predicts what the .keras model predicts on a probe batch, and write the class names to
    ``assets.extra/classes.json``."""
    target = check_parent_folder("--out", out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"--out {out}: expected a new or empty folder, got an existing "
            f"{'folder with files' if target.is_dir() else 'file'}"
        )
    model = load_saved(model_path)
    import tensorflow as tf

    from search import serving

    takes = serving.input_kind(model)
    if takes == "text":
        probe: Any = tf.constant(["a wonderful film, I loved it", "dull and far too long", ""])
    elif takes == "token_ids":
        probe = np.array([[1, 14, 22, 16, 43], [1, 2, 9, 0, 0]], dtype=np.int32)
    else:
        features = model.inputs[0].shape[-1]
        rng = np.random.default_rng(0)
        probe = rng.normal(size=(2, 4, features))
        probe[1, 2:] = np.nan
    created = not target.exists()
    try:
        return _export_checked(model, model_path, target, probe)
    except BaseException:
        # A refused or failed export leaves nothing behind (the folder was new or empty).
        shutil.rmtree(target, ignore_errors=True)
        if not created:
            target.mkdir(exist_ok=True)
        raise


def _export_checked(model: Any, model_path: str, target: Path, probe: Any) -> dict[str, Any]:
    import tensorflow as tf

    from search import serving

    out = str(target)
    takes = serving.input_kind(model)
    model.export(str(target), format="tf_saved_model", verbose=False)
    extra = target / "assets.extra"
    extra.mkdir(exist_ok=True)
    classes = serving.names_of(model)
    (extra / "classes.json").write_text(json.dumps(classes), encoding="utf-8")
    expected = np.asarray(model.predict_on_batch(probe))
    reloaded = tf.saved_model.load(str(target))  # kept: its functions use its variables
    served = np.asarray(reloaded.serve(probe))
    difference = float(np.max(np.abs(expected - served)))
    if not math.isfinite(difference) or difference > 1e-5:
        raise UsageError(
            f"--out {out}: the SavedModel's predictions differ from the model's by {difference}"
        )
    return {
        "model": model_path,
        "out": str(target),
        "input": takes,
        "classes": classes,
        "endpoint": "serve",
        "max_difference": difference,
    }
