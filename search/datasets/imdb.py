"""Reading a file in Keras' ``imdb.npz`` layout exactly as ``keras.datasets.imdb.load_data`` does.

The layout stores ragged word-index lists as object arrays; they are read through
:mod:`search.datasets.safe_npz`, so the file never runs code. Each split comes back as flat
arrays (``tokens``, ``offsets``, ``labels``) that :class:`search.data.TokenSequences` wraps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.datasets import safe_npz
from search.errors import DataError

#: Keras' IMDB reading conventions (keras.datasets.imdb.load_data), reproduced exactly. The
#: out-of-vocabulary id (2) is applied per trial, in :func:`search.data.encode_vocab`.
IMDB_SHUFFLE_SEED = 113
IMDB_START_CHAR = 1
IMDB_INDEX_FROM = 3

IMDB_ARRAYS = ("x_train", "y_train", "x_test", "y_test")

Split = tuple[np.ndarray, np.ndarray, np.ndarray]  # tokens (int32), offsets (int64), labels


def _convert(path: Path, name: str, xs: np.ndarray, ys: np.ndarray) -> Split:
    """Flat tokens with ``start_char`` prefixed and ids shifted by ``index_from``."""
    try:
        lengths = np.fromiter((len(s) for s in xs), dtype=np.int64, count=len(xs))
        raw = (
            np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1) for s in xs])
            if len(xs)
            else np.zeros(0, dtype=np.int64)
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(
            f"{path}: {name} is not a list of word-index lists as in Keras' imdb.npz ({exc})"
        ) from None
    if len(raw) != lengths.sum():
        raise DataError(f"{path}: {name} holds nested lists; expected lists of word indices")
    if len(raw) and (raw.min() < 0 or raw.max() > np.iinfo(np.int32).max - IMDB_INDEX_FROM):
        raise DataError(f"{path}: {name} holds word indices outside 0..2**31-4")
    lengths = lengths + 1
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.empty(offsets[-1], dtype=np.int32)
    tokens[offsets[:-1]] = IMDB_START_CHAR
    body = np.ones(offsets[-1], dtype=bool)
    body[offsets[:-1]] = False
    tokens[body] = raw + IMDB_INDEX_FROM
    return tokens, offsets, np.asarray(ys).astype(np.int64)


def read_imdb_npz(path: Path) -> tuple[Split, Split]:
    """Train and test of a file in Keras' imdb.npz layout, read as Keras reads its own file.

    Shuffle train then test with one RandomState(113), prefix start_char=1, shift ids by
    index_from=3; ``num_words`` is applied later, per trial, by :func:`search.data.encode_vocab`.
    """
    with safe_npz.open_npz(path) as f:
        missing = set(IMDB_ARRAYS) - set(f.files)
        if missing:
            raise DataError(
                f"{path}: not in Keras' imdb.npz layout; missing arrays {sorted(missing)}"
            )
        x_train, y_train = f["x_train"], f["y_train"]
        x_test, y_test = f["x_test"], f["y_test"]
    for name, arr in (("x_train", x_train), ("x_test", x_test), ("y_train", y_train)):
        if arr.ndim != 1:
            raise DataError(f"{path}: {name} has shape {arr.shape}; expected one entry a review")
    if y_test.ndim != 1 or y_train.dtype.kind not in "biu" or y_test.dtype.kind not in "biu":
        raise DataError(f"{path}: y_train and y_test must be 1-D integer labels")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"{path}: x and y arrays differ in length")
    rng = np.random.RandomState(IMDB_SHUFFLE_SEED)
    idx = np.arange(len(x_train))
    rng.shuffle(idx)
    x_train, y_train = x_train[idx], y_train[idx]
    idx = np.arange(len(x_test))
    rng.shuffle(idx)
    x_test, y_test = x_test[idx], y_test[idx]
    return _convert(path, "x_train", x_train, y_train), _convert(path, "x_test", x_test, y_test)
