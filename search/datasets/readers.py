"""Readers of user data: text tables (CSV, CSV.gz, JSONL), text folders, numeric sequences.

Every reader returns *parts*: ``{"train": (items, labels), "test": (items, labels)}`` or
``{"all": (items, labels)}`` when the data carries no split of its own. Items are strings (text)
or ``(T_i, F)`` float arrays (numeric; .npz files are read by :mod:`search.datasets.safe_npz`,
which never runs code from them). Labels are raw values; :func:`encode_labels` maps them to
``0..K-1``. Every problem is a :class:`~search.errors.DataError` whose one line names the file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from search.datasets import safe_npz
from search.errors import DataError

Parts = dict[str, tuple[list[Any], list[Any]]]

#: Columns that make a CSV a long-format numeric table: one row per (sequence, time step).
LONG_ID_COL = "sequence_id"
LONG_STEP_COL = "step"
SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test"}
TEXT_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".ndjson")
#: The pickle-free ragged numeric layout: ``x_train_values`` (every sequence's steps, one after
#: the other) and ``x_train_lengths`` (one length a sequence); the same for ``x_test``.
RAGGED_VALUES = "_values"
RAGGED_LENGTHS = "_lengths"


#: What reading a text file can raise: I/O, undecodable bytes, malformed CSV, and a .gz file that
#: is truncated (EOFError) or corrupt (zlib.error, gzip.BadGzipFile is an OSError).
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    UnicodeDecodeError,
    csv.Error,
    EOFError,
    zlib.error,
)


def _name(path: Path) -> str:
    return str(path)


def folder_fingerprint(path: Path) -> str:
    """A hash of every file's relative path, size and modification time (cheap, no reading)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*.txt") if p.is_file()):
        st = f.stat()
        digest.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: a byte-order mark (Excel writes one) would otherwise join the first column's name
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open("r", encoding="utf-8-sig", newline="")


def _split_of(value: Any, path: Path, where: str, split_col: str) -> str:
    key = str(value).strip().lower()
    if key not in SPLIT_NAMES:
        raise DataError(
            f"{_name(path)}: {where}: split column {split_col!r} holds {value!r}; expected train "
            "or test (the validation part is taken from train)"
        )
    return SPLIT_NAMES[key]


def _csv_rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """The header and an iterator over the data rows (the file closes when it is exhausted)."""
    csv.field_size_limit(2**31 - 1)
    fh = None
    try:
        fh = _open_text(path)
        reader = csv.reader(fh)
        header = next(reader, None)
    except READ_ERRORS as exc:
        if fh is not None:
            fh.close()
        raise DataError(f"{_name(path)}: cannot read as CSV: {exc}") from None
    if header is None or not [h for h in header if h.strip()]:
        fh.close()
        raise DataError(f"{_name(path)}: empty file: no header row and no data")

    names = [h.strip() for h in header]
    for i, name in enumerate(names):
        if name and name in names[:i]:
            fh.close()
            raise DataError(
                f"{_name(path)}: column {name!r} appears twice in the header (columns "
                f"{names.index(name) + 1} and {i + 1}); expected each column named once"
            )

    def rows() -> Iterator[list[str]]:
        with fh:
            yield from reader

    return names, rows()


def _column(header: list[str], name: str, option: str, path: Path) -> int:
    if name not in header:
        raise DataError(
            f"{_name(path)}: no column {name!r} (columns: {', '.join(header)}); pass {option}"
        )
    return header.index(name)


def _group(
    parts: dict[str, tuple[list[Any], list[Any]]], split: str, item: Any, label: Any
) -> None:
    items, labels = parts.setdefault(split, ([], []))
    items.append(item)
    labels.append(label)


def _finish_parts(parts: Parts, path: Path, what: str) -> Parts:
    if not parts or sum(len(v[0]) for v in parts.values()) == 0:
        raise DataError(f"{_name(path)}: empty file: no {what}")
    if "test" in parts and "train" not in parts:
        raise DataError(f"{_name(path)}: the split column marks no row as train")
    return parts


def is_long_csv(path: Path) -> bool:
    try:
        with _open_text(path) as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
    except READ_ERRORS as exc:
        raise DataError(f"{_name(path)}: cannot read as CSV: {exc}") from None
    return LONG_ID_COL in header and LONG_STEP_COL in header


def read_text_table(
    path: Path, text_col: str, label_col: str, split_col: str | None
) -> tuple[Parts, str | None]:
    """Rows of a CSV/CSV.gz/JSONL file; returns the parts and the split column used.

    ``split_col`` None means: a column named ``split`` if there is one.
    """
    parts: Parts = {}
    if ".jsonl" in path.name or path.suffix == ".ndjson":
        rows = _jsonl_rows(path)
        first = next(rows, None)
        if first is None:
            raise DataError(f"{_name(path)}: empty file: no JSON lines")
        line_no, row = first
        keys = list(row)
        used_split = split_col if split_col is not None else ("split" if "split" in keys else None)
        for name, option in ((text_col, "--text-col"), (label_col, "--label-col")):
            if name not in row:
                raise DataError(
                    f"{_name(path)}: line {line_no}: no key {name!r} (keys: {', '.join(keys)}); "
                    f"pass {option}"
                )
        if used_split is not None and used_split not in row:
            raise DataError(
                f"{_name(path)}: line {line_no}: no key {used_split!r} (keys: {', '.join(keys)}); "
                "pass --split-col"
            )
        for line_no, row in [first, *rows]:
            for name in (text_col, label_col) + ((used_split,) if used_split else ()):
                if name not in row:
                    raise DataError(f"{_name(path)}: line {line_no}: no key {name!r}")
            text = row[text_col]
            if not isinstance(text, str):
                raise DataError(
                    f"{_name(path)}: line {line_no}: {text_col!r} is {type(text).__name__}, "
                    "expected a string"
                )
            split = (
                _split_of(row[used_split], path, f"line {line_no}", used_split)
                if used_split
                else "all"
            )
            _group(parts, split, text, row[label_col])
        return _finish_parts(parts, path, "rows"), used_split

    header, reader = _csv_rows(path)
    ti = _column(header, text_col, "--text-col", path)
    li = _column(header, label_col, "--label-col", path)
    used_split = split_col if split_col is not None else ("split" if "split" in header else None)
    si = _column(header, used_split, "--split-col", path) if used_split else None
    try:
        for n, rec in enumerate(reader, start=2):
            if not rec:
                continue
            if len(rec) != len(header):
                raise DataError(
                    f"{_name(path)}: row {n} has {len(rec)} fields, the header {len(header)}"
                )
            split = _split_of(rec[si], path, f"row {n}", used_split) if si is not None else "all"
            _group(parts, split, rec[ti], rec[li])
    except READ_ERRORS as exc:
        raise DataError(f"{_name(path)}: cannot read as CSV: {exc}") from None
    return _finish_parts(parts, path, "data rows"), used_split


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with _open_text(path) as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{_name(path)}: line {n}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{_name(path)}: line {n}: expected a JSON object")
                yield n, row
    except READ_ERRORS as exc:
        raise DataError(f"{_name(path)}: cannot read as JSON lines: {exc}") from None


def read_text_folder(path: Path) -> Parts:
    """``train/<label>/*.txt`` and, if present, ``test/<label>/*.txt``."""
    if not (path / "train").is_dir():
        raise DataError(
            f"{_name(path)}: a data folder needs train/<label>/*.txt (and optionally "
            "test/<label>/*.txt); there is no train/ folder"
        )
    parts: Parts = {}
    for split in ("train", "test"):
        root = path / split
        if not root.is_dir():
            continue
        for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for f in sorted(label_dir.glob("*.txt")):
                try:
                    text = f.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    raise DataError(f"{_name(f)}: cannot read: {exc}") from None
                _group(parts, split, text, label_dir.name)
    if "train" not in parts:
        raise DataError(f"{_name(path)}: no train/<label>/*.txt files (empty data folder)")
    return parts


def _features(x: Any, path: Path, name: str) -> list[np.ndarray]:
    """(T_i, F) float arrays from an (N, T, F) array or an object array of (T_i, F) arrays."""
    x = np.asarray(x)
    expected = "expected (N, T, F) numbers or an object array of (T_i, F) arrays"
    if x.dtype == object:
        if x.ndim != 1:
            raise DataError(
                f"{_name(path)}: {name} is an object array of shape {x.shape}; {expected}"
            )
        out: list[np.ndarray] = []
        width = None
        for i, e in enumerate(x):
            try:
                a = np.asarray(e)
            except ValueError:
                raise DataError(
                    f"{_name(path)}: {name}[{i}] is ragged inside; {expected}"
                ) from None
            if a.dtype == object or a.ndim != 2:
                raise DataError(
                    f"{_name(path)}: {name}[{i}] has shape {a.shape} (dtype {a.dtype}); {expected}"
                )
            if a.dtype.kind not in "biuf":
                raise DataError(
                    f"{_name(path)}: {name}[{i}] holds non-numeric features (dtype {a.dtype})"
                )
            if width is None:
                width = a.shape[1]
            elif a.shape[1] != width:
                raise DataError(
                    f"{_name(path)}: {name}[{i}] has {a.shape[1]} features, {name}[0] {width}; "
                    "every sequence needs the same feature count"
                )
            out.append(a.astype(np.float64))
        return out
    if x.dtype.kind not in "biuf":
        raise DataError(f"{_name(path)}: {name} holds non-numeric features (dtype {x.dtype})")
    if x.ndim != 3:
        raise DataError(f"{_name(path)}: {name} has shape {x.shape}; {expected}")
    return list(x.astype(np.float64))


def numeric_npz_kind(path: Path) -> str:
    """``imdb`` for Keras' imdb.npz layout (object arrays of int lists), else ``numeric``."""
    with safe_npz.open_npz(path) as f:
        if "x_train" not in f:
            if f"x_train{RAGGED_VALUES}" in f:
                return "numeric"
            raise DataError(
                f"{_name(path)}: no array 'x_train' (arrays: {', '.join(f.files) or 'none'}); "
                "expected x_train, y_train and optionally x_test, y_test (or x_train_values "
                "and x_train_lengths for ragged sequences)"
            )
        x = f["x_train"]
    if x.dtype == object and x.ndim == 1 and len(x) and np.asarray(x[0]).ndim == 1:
        first = np.asarray(x[0])
        if first.dtype.kind in "iu" or (
            first.dtype == object and all(isinstance(v, int) for v in first)
        ):
            return "imdb"
    return "numeric"


def _ragged(values: np.ndarray, lengths: np.ndarray, path: Path, split: str) -> list[np.ndarray]:
    """(T_i, F) arrays from the pickle-free ragged layout: all steps plus one length a sequence."""
    v, n = f"x_{split}{RAGGED_VALUES}", f"x_{split}{RAGGED_LENGTHS}"
    if values.dtype.kind not in "biuf":
        raise DataError(f"{_name(path)}: {v} holds non-numeric features (dtype {values.dtype})")
    if values.ndim == 1:
        values = values[:, None]
    elif values.ndim != 2:
        raise DataError(
            f"{_name(path)}: {v} has shape {values.shape}; expected (total_steps, F) or "
            "(total_steps,): every sequence's steps, one after the other"
        )
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise DataError(
            f"{_name(path)}: {n} has shape {lengths.shape} and dtype {lengths.dtype}; expected "
            "one integer length a sequence"
        )
    if len(lengths) and lengths.min() < 0:
        raise DataError(f"{_name(path)}: {n} holds a negative length ({lengths.min()})")
    total = int(lengths.sum(dtype=np.int64))
    if total != len(values):
        raise DataError(
            f"{_name(path)}: {n} sums to {total} steps, {v} holds {len(values)}; they must be equal"
        )
    ends = np.cumsum(lengths.astype(np.int64))
    return np.split(values.astype(np.float64), ends[:-1]) if len(lengths) else []


def read_numeric_npz(path: Path) -> Parts:
    with safe_npz.open_npz(path) as f:
        names = set(f.files)
        for split in ("train", "test"):
            x, v, n = (f"x_{split}{s}" for s in ("", RAGGED_VALUES, RAGGED_LENGTHS))
            if x in names and (v in names or n in names):
                raise DataError(
                    f"{_name(path)}: holds both {x} and {v if v in names else n}; give {x} or "
                    f"the ragged pair {v}, {n}, not both"
                )
            if (v in names) != (n in names):
                raise DataError(
                    f"{_name(path)}: {v} and {n} come together ({n if v in names else v} "
                    "is missing)"
                )
        present = {k for k in names if k in ("y_train", "y_test")} | {
            f"x_{s}" for s in ("train", "test") if {f"x_{s}", f"x_{s}{RAGGED_VALUES}"} & names
        }
        missing = {"x_train", "y_train"} - present
        if missing:
            raise DataError(f"{_name(path)}: missing arrays {sorted(missing)}")
        if ("x_test" in present) != ("y_test" in present):
            raise DataError(f"{_name(path)}: x_test and y_test come together (one is missing)")
        wanted = [
            f"{name}{suffix}"
            for name in ("x_train", "x_test")
            for suffix in ("", RAGGED_VALUES, RAGGED_LENGTHS)
        ] + ["y_train", "y_test"]
        arrays = {k: f[k] for k in wanted if k in names}
    parts: Parts = {}
    for split in ("train", "test"):
        if f"x_{split}" in arrays:
            xs = _features(arrays[f"x_{split}"], path, f"x_{split}")
        elif f"x_{split}{RAGGED_VALUES}" in arrays:
            xs = _ragged(
                arrays[f"x_{split}{RAGGED_VALUES}"],
                arrays[f"x_{split}{RAGGED_LENGTHS}"],
                path,
                split,
            )
        else:
            continue
        ys = np.asarray(arrays[f"y_{split}"])
        if ys.ndim != 1 or len(ys) != len(xs):
            raise DataError(
                f"{_name(path)}: y_{split} has shape {ys.shape}; expected ({len(xs)},) labels"
            )
        if ys.dtype.kind not in "biuf":
            raise DataError(f"{_name(path)}: y_{split} holds non-integer labels (dtype {ys.dtype})")
        if ys.dtype.kind == "f":
            bad = ys[~np.isfinite(ys) | (ys != np.round(ys))] if len(ys) else ys
            if len(bad):
                raise DataError(
                    f"{_name(path)}: y_{split} holds non-integer labels (e.g. {bad[0]})"
                )
        parts[split] = (xs, [int(v) for v in ys])
    if not parts.get("train", ([], []))[0]:
        raise DataError(f"{_name(path)}: empty file: x_train holds no sequences")
    if parts.get("test", ([], []))[0]:
        got, want = parts["test"][0][0].shape[1], parts["train"][0][0].shape[1]
        if got != want:
            raise DataError(
                f"{_name(path)}: x_test has {got} features per step, x_train {want}; expected "
                "the same features"
            )
    for split, (xs, _) in parts.items():
        _check_finite(xs, path, f"x_{split}")
    return parts


#: Models compute in float32: a feature beyond its range becomes infinite in the model.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite(xs: list[np.ndarray], path: Path, what: str) -> None:
    """Refuse NaN, infinite or float32-overflowing features (``what`` names the sequences)."""
    if not xs:
        return
    values = np.concatenate([x.reshape(-1) for x in xs])
    if not np.isfinite(values).all():
        raise DataError(f"{_name(path)}: {what} holds NaN or infinite values; expected numbers")
    largest = float(np.abs(values).max(initial=0.0))
    if largest > FLOAT32_MAX:
        raise DataError(
            f"{_name(path)}: {what} holds {largest:.3g}; expected features within float32's "
            f"range (at most {FLOAT32_MAX:.3g} in size)"
        )


def read_long_csv(path: Path, label_col: str, split_col: str | None) -> tuple[Parts, list[str]]:
    """A long table: ``sequence_id``, ``step``, feature columns, label (and split) columns."""
    header, reader = _csv_rows(path)
    ii = _column(header, LONG_ID_COL, "a sequence_id column", path)
    ti = _column(header, LONG_STEP_COL, "a step column", path)
    li = _column(header, label_col, "--label-col", path)
    used_split = split_col if split_col is not None else ("split" if "split" in header else None)
    si = _column(header, used_split, "--split-col", path) if used_split else None
    fcols = [i for i in range(len(header)) if i not in {ii, ti, li, si}]
    if not fcols:
        raise DataError(f"{_name(path)}: no feature columns besides sequence_id, step and label")
    seqs: dict[str, dict[str, Any]] = {}
    try:
        _long_rows(path, reader, header, (ii, ti, li, si), fcols, used_split, seqs)
    except READ_ERRORS as exc:
        raise DataError(f"{_name(path)}: cannot read as CSV: {exc}") from None
    parts: Parts = {}
    for sid, seq in seqs.items():
        steps = sorted(seq["steps"], key=lambda s: s[0])
        starts = [step for step, _ in steps]
        twice = next((a for a, b in zip(starts, starts[1:], strict=False) if a == b), None)
        if twice is not None:
            raise DataError(
                f"{_name(path)}: sequence {sid!r} has step {twice:g} twice; expected each step "
                "once per sequence"
            )
        _group(parts, seq["split"], np.array([v for _, v in steps], dtype=np.float64), seq["label"])
    for split, (xs, _) in parts.items():
        _check_finite(xs, path, "features" if split == "all" else f"the {split} features")
    return _finish_parts(parts, path, "data rows"), [header[i] for i in fcols]


def _long_rows(
    path: Path,
    reader: Iterator[list[str]],
    header: list[str],
    columns: tuple[int, int, int, int | None],
    fcols: list[int],
    used_split: str | None,
    seqs: dict[str, dict[str, Any]],
) -> None:
    """Gather a long table's rows into ``seqs`` (sequence id -> label, split, steps)."""
    ii, ti, li, si = columns
    for n, rec in enumerate(reader, start=2):
        if not rec:
            continue
        if len(rec) != len(header):
            raise DataError(
                f"{_name(path)}: row {n} has {len(rec)} fields, the header {len(header)}"
            )
        try:
            step = float(rec[ti])
        except ValueError:
            raise DataError(f"{_name(path)}: row {n}: step {rec[ti]!r} is not a number") from None
        if not math.isfinite(step):
            raise DataError(f"{_name(path)}: row {n}: step {rec[ti]!r}; expected a finite number")
        values = []
        for i in fcols:
            try:
                values.append(float(rec[i]))
            except ValueError:
                raise DataError(
                    f"{_name(path)}: row {n}: feature {header[i]!r} holds {rec[i]!r}, not a number "
                    "(non-numeric features)"
                ) from None
        split = _split_of(rec[si], path, f"row {n}", used_split) if si is not None else "all"
        seq = seqs.setdefault(rec[ii], {"label": rec[li], "split": split, "steps": []})
        if seq["label"] != rec[li]:
            raise DataError(
                f"{_name(path)}: row {n}: sequence {rec[ii]!r} has labels {seq['label']!r} and "
                f"{rec[li]!r}; one label per sequence"
            )
        if seq["split"] != split:
            raise DataError(f"{_name(path)}: row {n}: sequence {rec[ii]!r} is in two splits")
        seq["steps"].append((step, values))


def _label_key(value: Any) -> int | str | None:
    """An int for integer-like values, the stripped string for class names; None if missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise ValueError(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer():
        return int(number)
    raise ValueError(value)


def encode_labels(
    parts: dict[str, list[Any]], path: Path, label_col: str | None = None
) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Labels as ``0..K-1`` (classes sorted; integers 0..K-1 keep their value) and the classes."""
    what = f"label column {label_col!r}" if label_col else "labels"
    keys: dict[str, list[int | str]] = {}
    for split, raw in parts.items():
        out: list[int | str] = []
        for i, v in enumerate(raw):
            try:
                k = _label_key(v)
            except ValueError:
                raise DataError(
                    f"{_name(path)}: {what} holds non-integer labels (e.g. {v!r}); expected "
                    "integer classes or class names"
                ) from None
            if k is None:
                raise DataError(f"{_name(path)}: {what}: example {i + 1} of {split} has no label")
            out.append(k)
        keys[split] = out
    all_keys = [k for ks in keys.values() for k in ks]
    if any(isinstance(k, str) for k in all_keys):
        keys = {s: [str(k) for k in ks] for s, ks in keys.items()}
    train_keys = keys.get("train", keys.get("all", []))
    classes = sorted(set(train_keys))
    index = {c: i for i, c in enumerate(classes)}
    encoded: dict[str, np.ndarray] = {}
    for split, ks in keys.items():
        unknown = sorted({k for k in ks if k not in index}, key=str)
        if unknown:
            raise DataError(
                f"{_name(path)}: {split} labels {unknown[:5]} do not occur in the training part"
            )
        encoded[split] = np.fromiter((index[k] for k in ks), dtype=np.int64, count=len(ks))
    return encoded, classes
