"""Loading and preparing sequence data for trials.

Raw data is read once per process (:func:`load_source`); each distinct preprocessing
(vocabulary size, sequence length, padding) is prepared once and shared by every trial that
asks for it (:meth:`DataSource.prepare`). The test split is kept apart: searches never see it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import DataError

#: Keras' IMDB reading conventions (keras.datasets.imdb.load_data), reproduced exactly.
IMDB_SHUFFLE_SEED = 113
IMDB_START_CHAR = 1
IMDB_OOV_CHAR = 2
IMDB_INDEX_FROM = 3
IMDB_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_HASH = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"

VALIDATION_FRACTION = 0.2
SPLIT_SEED = 20240611
SHARED_COPY_HINT = "../shared/data/imdb/imdb.npz"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class InputSpec:
    """What a model's input looks like; :func:`search.model.build_model` reads only this."""

    kind: str  # "tokens" or "numeric"
    maxlen: int
    num_classes: int
    vocab_size: int | None = None
    features: int | None = None


@dataclass(frozen=True)
class PreparedData:
    """Arrays ready for ``model.fit``: train and validation only, test kept for retraining."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    spec: InputSpec
    fingerprint: str


@dataclass
class TokenSequences:
    """Ragged token sequences as one flat array plus offsets (no per-row Python objects)."""

    tokens: np.ndarray  # int32, all sequences concatenated
    offsets: np.ndarray  # int64, len N + 1
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, idx: np.ndarray) -> TokenSequences:
        lengths = self.lengths[idx]
        starts = self.offsets[:-1][idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        pos = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths) + np.repeat(starts, lengths)
        return TokenSequences(self.tokens[pos], offsets, self.labels[idx])

    @classmethod
    def from_lists(cls, seqs: Any, labels: np.ndarray) -> TokenSequences:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = (
            np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs])
            if len(seqs)
            else np.zeros(0, dtype=np.int32)
        )
        return cls(tokens, offsets, np.asarray(labels))


def pad(seqs: TokenSequences, maxlen: int, padding: str = "pre", truncating: str = "pre") -> np.ndarray:
    """Like ``keras.utils.pad_sequences`` with value 0, vectorised over all rows."""
    n = len(seqs)
    lengths = seqs.lengths
    take = np.minimum(lengths, maxlen)
    out = np.zeros((n, maxlen), dtype=np.int32)
    rows = np.repeat(np.arange(n), take)
    within = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
    first = seqs.offsets[:-1] + (lengths - take if truncating == "pre" else 0)
    src = np.repeat(first, take) + within
    cols = within + (np.repeat(maxlen - take, take) if padding == "pre" else 0)
    out[rows, cols] = seqs.tokens[src]
    return out


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices with class proportions as in ``labels``, in a shuffled order."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    short = n - quota.sum()
    for i in np.argsort(-(counts / counts.sum() * n - quota))[:short]:
        quota[i] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(picked))


@dataclass
class DataSource:
    """Raw sequences of one data set, read once; prepared variants are cached per process."""

    name: str
    description: dict[str, Any]
    train: TokenSequences
    test: TokenSequences
    num_classes: int
    base_fingerprint: str
    validation_fraction: float = VALIDATION_FRACTION
    _cache: dict[tuple, PreparedData] = field(default_factory=dict, repr=False)
    _split: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and validation indices into ``train``: stratified, fixed seed, computed once."""
        if self._split is None:
            rng = np.random.default_rng(SPLIT_SEED)
            labels = self.train.labels
            n_val = max(1, int(round(len(labels) * self.validation_fraction)))
            val = np.sort(stratified_indices(labels, n_val, rng))
            mask = np.ones(len(labels), dtype=bool)
            mask[val] = False
            self._split = (np.flatnonzero(mask), val)
        return self._split

    def prepare(self, config: dict[str, Any]) -> PreparedData:
        vocab = int(config["vocab_size"])
        maxlen = int(config["maxlen"])
        padding = str(config["padding"])
        key = (vocab, maxlen, padding)
        if key not in self._cache:
            train_idx, val_idx = self.split()
            x = encode_vocab(self.train, vocab)
            fp = hashlib.sha256(
                json.dumps([self.base_fingerprint, vocab, maxlen, padding]).encode()
            ).hexdigest()[:16]
            x_all = pad(x, maxlen, padding)
            y = self.train.labels
            self._cache[key] = PreparedData(
                x_train=x_all[train_idx],
                y_train=y[train_idx],
                x_val=x_all[val_idx],
                y_val=y[val_idx],
                spec=InputSpec("tokens", maxlen, self.num_classes, vocab_size=vocab),
                fingerprint=fp,
            )
        return self._cache[key]

    def prepare_full(self, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, InputSpec]:
        """All training data and the test split, for retraining a chosen configuration."""
        vocab = int(config["vocab_size"])
        maxlen = int(config["maxlen"])
        padding = str(config["padding"])
        x_train = pad(encode_vocab(self.train, vocab), maxlen, padding)
        x_test = pad(encode_vocab(self.test, vocab), maxlen, padding)
        spec = InputSpec("tokens", maxlen, self.num_classes, vocab_size=vocab)
        return x_train, self.train.labels, x_test, self.test.labels, spec


def encode_vocab(seqs: TokenSequences, vocab_size: int) -> TokenSequences:
    """Map word ids >= vocab_size to the out-of-vocabulary id, as Keras' ``num_words`` does."""
    tokens = np.where(seqs.tokens < vocab_size, seqs.tokens, IMDB_OOV_CHAR).astype(np.int32)
    return TokenSequences(tokens, seqs.offsets, seqs.labels)


def read_imdb_npz(path: Path) -> tuple[TokenSequences, TokenSequences]:
    """Read a file in Keras' imdb.npz layout exactly as ``keras.datasets.imdb.load_data`` does.

    Shuffle train then test with one RandomState(113), prefix start_char=1, shift ids by
    index_from=3; ``num_words`` is applied later, per trial, by :func:`encode_vocab`.
    """
    try:
        # allow_pickle: the layout stores ragged lists as object arrays, as Keras' own file does.
        with np.load(path, allow_pickle=True) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise DataError(
                    f"{path}: not in Keras' imdb.npz layout; missing arrays {sorted(missing)}"
                )
            x_train, y_train = f["x_train"], f["y_train"]
            x_test, y_test = f["x_test"], f["y_test"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as an .npz file: {exc}") from None
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"{path}: x and y arrays differ in length")
    rng = np.random.RandomState(IMDB_SHUFFLE_SEED)
    idx = np.arange(len(x_train))
    rng.shuffle(idx)
    x_train, y_train = x_train[idx], y_train[idx]
    idx = np.arange(len(x_test))
    rng.shuffle(idx)
    x_test, y_test = x_test[idx], y_test[idx]

    def convert(xs: np.ndarray, ys: np.ndarray) -> TokenSequences:
        raw = TokenSequences.from_lists(xs, np.asarray(ys).astype(np.int64))
        lengths = raw.lengths + 1
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.empty(offsets[-1], dtype=np.int32)
        tokens[offsets[:-1]] = IMDB_START_CHAR
        body = np.ones(offsets[-1], dtype=bool)
        body[offsets[:-1]] = False
        tokens[body] = raw.tokens + IMDB_INDEX_FROM
        return TokenSequences(tokens, offsets, raw.labels)

    return convert(x_train, y_train), convert(x_test, y_test)


def _imdb_via_keras() -> Path:
    """Keras' own cached copy of imdb.npz, downloading it when online."""
    cached = Path.home() / ".keras" / "datasets" / "imdb.npz"
    if cached.is_file():
        return cached
    try:
        import keras

        return Path(keras.utils.get_file("imdb.npz", origin=IMDB_ORIGIN, file_hash=IMDB_HASH))
    except Exception as exc:  # noqa: BLE001 - any download failure means the same to the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"--data imdb: cannot download IMDB through Keras ({reason}); offline, pass a local "
            f"copy in Keras' imdb.npz layout instead, e.g. --data {SHARED_COPY_HINT}"
        ) from None


_SOURCES: dict[tuple, DataSource] = {}


def load_source(data: str, *, limit: int | None = None) -> DataSource:
    """Read ``imdb`` or a file in imdb.npz layout, once per process and (data, limit)."""
    key = (data, limit)
    if key in _SOURCES:
        return _SOURCES[key]
    if data == "imdb":
        path = _imdb_via_keras()
    else:
        path = Path(data)
        if not path.exists():
            raise DataError(f"{data}: no such file; expected 'imdb' or a path to a data file")
        if path.suffix != ".npz":
            raise DataError(
                f"{data}: unsupported data file; expected 'imdb' or a .npz in Keras' imdb.npz layout"
            )
    train, test = read_imdb_npz(path)
    if limit is not None:
        if limit < 10:
            raise DataError(f"--limit {limit}: expected at least 10 training examples")
        if limit < len(train):
            train = train.take(stratified_indices(train.labels, limit, np.random.default_rng(0)))
    classes = np.unique(train.labels)
    if len(classes) < 2:
        raise DataError(f"{data}: training labels hold a single class {classes.tolist()}")
    fingerprint = hashlib.sha256(
        json.dumps([file_sha256(path), limit, VALIDATION_FRACTION, SPLIT_SEED]).encode()
    ).hexdigest()[:16]
    source = DataSource(
        name="imdb" if data == "imdb" else path.name,
        description={
            "source": data,
            "path": str(path.resolve()),
            "format": "imdb-npz",
            "limit": limit,
            "validation_fraction": VALIDATION_FRACTION,
            "split_seed": SPLIT_SEED,
            "fingerprint": fingerprint,
            "train_examples": len(train),
            "test_examples": len(test),
        },
        train=train,
        test=test,
        num_classes=int(len(classes)),
        base_fingerprint=fingerprint,
    )
    _SOURCES[key] = source
    return source
