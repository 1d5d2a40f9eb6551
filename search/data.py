"""Loading and preparing sequence data for trials.

Raw data is read once per process (:func:`load_source`) by the readers of :mod:`search.datasets`:
Keras' IMDB file, a text table (CSV, CSV.gz, JSONL) or folder, or numeric sequences (.npz,
long-format CSV); user .npz files never run code (:mod:`search.datasets.safe_npz`). What is
costly and the same for every trial (reading, label encoding, the held-out test split, fitting
the vocabulary, tokenising, standardising) is done once per data fingerprint and preprocessing
parameters and cached on disk (:mod:`search.datasets.cache`), so other processes, workers and
resumes reuse it.
Each distinct trial preprocessing (vocabulary size, sequence length, padding) is then prepared
once per process and shared by every trial that asks for it (:meth:`DataSource.prepare`).
The test split is kept apart: searches never see it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.datasets import cache, imdb, readers
from search.errors import DataError, UsageError

if TYPE_CHECKING:
    from spaces.fit import DataStats

#: Keras' IMDB out-of-vocabulary id (its reading conventions: :mod:`search.datasets.imdb`).
IMDB_OOV_CHAR = 2
IMDB_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_HASH = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"

VALIDATION_FRACTION = 0.2
SPLIT_SEED = 20240611
#: Data without a test split of its own: this share is held out as the test split, stratified.
TEST_FRACTION = 0.2
TEST_SEED = 20240612
#: TextVectorization ids: 0 is padding, 1 the out-of-vocabulary token.
TEXT_OOV_ID = 1
#: A numeric step whose standardised features are all 0.0 would be masked as padding; its first
#: feature is nudged to this value instead.
ZERO_STEP_NUDGE = 1e-6
#: Bump when what the cache holds changes meaning.
CACHE_VERSION = 1
SHARED_COPY_HINT = "../shared/data/imdb/imdb.npz"

#: Options of `run` that shape the data (stored with a study, reused by resume and workers).
DATA_OPTION_DEFAULTS: dict[str, Any] = {
    "text_col": "text",
    "label_col": "label",
    "split_col": None,
    "bucketing": True,
}
OPTION_FLAGS = {
    "text_col": "--text-col",
    "label_col": "--label-col",
    "split_col": "--split-col",
    "bucketing": "--bucketing/--no-bucketing",
}


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
    #: True: the model takes sequences of any length up to maxlen (batches padded to their
    #: longest sequence, padding masked); False: exactly maxlen steps.
    variable_length: bool = False


@dataclass(frozen=True)
class PreparedData:
    """Arrays ready for ``model.fit``: train and validation only, test kept for retraining.

    ``x_*`` are padded to ``spec.maxlen``; ``len_*`` give each row's length after truncation,
    which bucketing (:mod:`search.train`) uses to cut batches to their longest row.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    spec: InputSpec
    fingerprint: str
    len_train: np.ndarray | None = None
    len_val: np.ndarray | None = None
    padding: str = "pre"

    @property
    def bucketing(self) -> bool:
        return self.spec.variable_length and self.len_train is not None


@dataclass(frozen=True)
class FullData:
    """All training data and the test split of one configuration, for retraining: arrays padded
    to ``spec.maxlen`` and each row's length after truncation (for batches by length)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: InputSpec
    len_train: np.ndarray
    len_test: np.ndarray
    padding: str = "pre"


@dataclass
class TokenSequences:
    """Ragged sequences as one flat array plus offsets (no per-row Python objects).

    ``tokens`` holds every step of every sequence: int32 word ids (shape ``(steps,)``), or for
    numeric data float32 feature vectors (shape ``(steps, F)``).
    """

    tokens: np.ndarray  # all sequences concatenated
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
    def from_lists(cls, seqs: Any, labels: np.ndarray, dtype: Any = np.int32) -> TokenSequences:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = (
            np.concatenate([np.asarray(s, dtype=dtype) for s in seqs])
            if len(seqs)
            else np.zeros(0, dtype=dtype)
        )
        return cls(tokens, offsets, np.asarray(labels))


def pad(
    seqs: TokenSequences, maxlen: int, padding: str = "pre", truncating: str = "pre"
) -> np.ndarray:
    """Like ``keras.utils.pad_sequences`` with value 0, vectorised over all rows."""
    n = len(seqs)
    lengths = seqs.lengths
    take = np.minimum(lengths, maxlen)
    out = np.zeros((n, maxlen, *seqs.tokens.shape[1:]), dtype=seqs.tokens.dtype)
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
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    return rng.permutation(np.concatenate(picked))


def validation_split(
    labels: np.ndarray, fraction: float = VALIDATION_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: stratified, fixed seed."""
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(len(labels) * fraction)))
    val = np.sort(stratified_indices(labels, n_val, rng))
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


@dataclass
class DataSource:
    """Sequences of one data set, read once; prepared variants are cached per process.

    ``train`` and ``test`` hold token ids (``kind == "tokens"``, out-of-vocabulary id
    ``oov_id``) or standardised feature vectors (``kind == "numeric"``, ``features`` wide).
    """

    name: str
    description: dict[str, Any]
    train: TokenSequences
    test: TokenSequences
    num_classes: int
    base_fingerprint: str
    validation_fraction: float = VALIDATION_FRACTION
    kind: str = "tokens"
    oov_id: int = IMDB_OOV_CHAR
    features: int | None = None
    bucketing: bool = False
    classes: list[Any] | None = None
    #: Text data: the vocabulary fitted on the training part, index = token id.
    vocabulary: list[str] | None = None
    #: Numeric data: the per-feature ``mean`` and ``std`` fitted on the training part.
    standardisation: dict[str, list[float]] | None = None
    #: "hit" when the prepared arrays came from the disk cache, "written" when made here.
    cache_status: str = ""
    _cache: dict[tuple, PreparedData] = field(default_factory=dict, repr=False)
    _split: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and validation indices into ``train``: stratified, fixed seed, computed once."""
        if self._split is None:
            self._split = validation_split(self.train.labels, self.validation_fraction)
        return self._split

    def _params(self, config: dict[str, Any]) -> tuple[int | None, int, str]:
        vocab = int(config["vocab_size"]) if self.kind == "tokens" else None
        maxlen = int(config["maxlen"])
        if self.kind == "numeric":
            # No steps beyond the longest sequence: maxlen is a cap, not a length to pad to.
            longest = max(
                int(self.train.lengths.max(initial=1)), int(self.test.lengths.max(initial=1))
            )
            maxlen = min(maxlen, longest)
        padding = str(config.get("padding") or "pre")
        return vocab, maxlen, padding

    def spec(self, config: dict[str, Any]) -> InputSpec:
        vocab, maxlen, _ = self._params(config)
        return InputSpec(
            self.kind,
            maxlen,
            self.num_classes,
            vocab_size=vocab,
            features=self.features,
            variable_length=self.bucketing,
        )

    def fit_stats(self) -> DataStats:
        """The statistics a data-fitted space (spaces.fit) reads: of the training part that
        trials fit on (the validation rows excluded, like the text vocabulary)."""
        from spaces.fit import DataStats

        train_idx, _ = self.split()
        part = self.train.take(train_idx)
        lengths = part.lengths
        p50, p90, p99 = (
            int(np.ceil(np.percentile(lengths, q))) if len(lengths) else 0 for q in (50, 90, 99)
        )
        words = first = None
        if self.kind == "tokens":
            # Ids below the first word are padding, start and out-of-vocabulary marks. Word ids
            # are ranked by frequency (Keras' IMDB index, TextVectorization), so the words seen
            # twice are about the first `words` ids.
            first = self.oov_id + 1
            counts = np.bincount(part.tokens.astype(np.int64), minlength=first)
            words = int((counts[first:] >= 2).sum())
        return DataStats(
            kind=self.kind,
            examples=len(part),
            num_classes=self.num_classes,
            length_min=int(lengths.min()) if len(lengths) else 0,
            length_p50=p50,
            length_p90=p90,
            length_p99=p99,
            length_max=int(lengths.max(initial=0)),
            words_seen_twice=words,
            first_word_id=first,
            features=self.features,
        )

    def _encode(self, seqs: TokenSequences, vocab: int | None) -> TokenSequences:
        return seqs if vocab is None else encode_vocab(seqs, vocab, self.oov_id)

    def prepare(self, config: dict[str, Any]) -> PreparedData:
        vocab, maxlen, padding = self._params(config)
        key = (vocab, maxlen, padding)
        if key not in self._cache:
            train_idx, val_idx = self.split()
            x = self._encode(self.train, vocab)
            fp = hashlib.sha256(
                json.dumps([self.base_fingerprint, vocab, maxlen, padding]).encode()
            ).hexdigest()[:16]
            x_all = pad(x, maxlen, padding)
            lengths = np.minimum(x.lengths, maxlen)
            y = self.train.labels
            self._cache[key] = PreparedData(
                x_train=x_all[train_idx],
                y_train=y[train_idx],
                x_val=x_all[val_idx],
                y_val=y[val_idx],
                spec=self.spec(config),
                fingerprint=fp,
                len_train=lengths[train_idx],
                len_val=lengths[val_idx],
                padding=padding,
            )
        return self._cache[key]

    def prepare_full(self, config: dict[str, Any]) -> FullData:
        """All training data and the test split, for retraining a chosen configuration."""
        vocab, maxlen, padding = self._params(config)
        train = self._encode(self.train, vocab)
        test = self._encode(self.test, vocab)
        return FullData(
            x_train=pad(train, maxlen, padding),
            y_train=self.train.labels,
            x_test=pad(test, maxlen, padding),
            y_test=self.test.labels,
            spec=self.spec(config),
            len_train=np.minimum(train.lengths, maxlen),
            len_test=np.minimum(test.lengths, maxlen),
            padding=padding,
        )


def encode_vocab(
    seqs: TokenSequences, vocab_size: int, oov_id: int = IMDB_OOV_CHAR
) -> TokenSequences:
    """Map word ids >= vocab_size to the out-of-vocabulary id, as Keras' ``num_words`` does."""
    tokens = np.where(seqs.tokens < vocab_size, seqs.tokens, oov_id).astype(np.int32)
    return TokenSequences(tokens, seqs.offsets, seqs.labels)


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

SUPPORTED = (
    "expected 'imdb', a data file (.npz, .csv, .csv.gz, .jsonl) or a folder holding "
    "train/<label>/*.txt"
)


def normalise_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The data options with defaults filled in (None means the default)."""
    out = dict(DATA_OPTION_DEFAULTS)
    for key, value in (options or {}).items():
        if key not in out:
            raise ValueError(f"unknown data option {key!r}")
        if value is not None:
            out[key] = bool(value) if key == "bucketing" else str(value)
    return out


def data_options(req: Any, stored: Any | None) -> dict[str, Any]:
    """The data options of a run: the request's for a new study, the stored ones otherwise.

    An existing study keeps its options; asking for a different one is refused with one line.
    Studies from before options were stored ran with fixed-length padding and keep it.
    """
    requested = {k: getattr(req, k, None) for k in DATA_OPTION_DEFAULTS}
    if stored is None:
        return normalise_options(requested)
    desc = getattr(stored, "data", None) or {}
    if "options" in desc:
        saved = normalise_options(desc["options"])
    else:
        saved = {**DATA_OPTION_DEFAULTS, "bucketing": False}
    for key, value in requested.items():
        if value is not None and value != saved[key]:
            flag = OPTION_FLAGS[key]
            if key == "bucketing":
                raise UsageError(
                    f"{'--bucketing' if value else '--no-bucketing'}: study "
                    f"{getattr(req, 'study', '?')!r} was started with bucketing "
                    f"{'on' if saved[key] else 'off'} (omit the option, or use a new --study name)"
                )
            raise UsageError(
                f"{flag} {value}: study {getattr(req, 'study', '?')!r} was started with {flag} "
                f"{saved[key]} (omit {flag}, or use a new --study name)"
            )
    return saved


def source_from_description(description: dict[str, Any]) -> DataSource:
    """The data source a study searched, from its stored description (for retrain, export)."""
    return load_source(
        str(description["source"]),
        limit=description.get("limit"),
        options=description.get("options") or {**DATA_OPTION_DEFAULTS, "bucketing": False},
    )


def _resolve_path(data: str) -> Path:
    if data == "imdb":
        return _imdb_via_keras()
    path = Path(data)
    if not path.exists():
        raise DataError(f"{data}: no such file or folder; {SUPPORTED}")
    if path.is_dir():
        return path
    name = path.name.lower()
    if not name.endswith((".npz", *readers.TEXT_SUFFIXES)):
        raise DataError(f"{data}: unsupported data file; {SUPPORTED}")
    if path.stat().st_size == 0:
        raise DataError(f"{data}: empty file")
    return path


#: A file's SHA-256 by (path, size, modification time): a run hashes its data once although
#: it is checked against the study (check_unchanged) before it is read (load_source).
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _input_fingerprint(path: Path) -> str:
    """The data's own bytes (a file's SHA-256) or, for a folder, its files' names, sizes and
    modification times."""
    try:
        if path.is_dir():
            return readers.folder_fingerprint(path)
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _FILE_HASHES:
            _FILE_HASHES[key] = file_sha256(path)
        return _FILE_HASHES[key]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _fingerprint(fmt: str, input_fp: str, limit: int | None, opts: dict[str, Any]) -> str:
    """What a study stores as its data's fingerprint: the input and everything that decides
    which examples it trains on (one formula since data sources were stored; a study compares
    it to tell the data it started on from changed data)."""
    if fmt == "imdb-npz":
        parts: list[Any] = [input_fp, limit, VALIDATION_FRACTION, SPLIT_SEED]
    else:
        parts = [input_fp, fmt, limit, opts["text_col"], opts["label_col"], opts["split_col"]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def check_unchanged(stored: dict[str, Any], data: str, study: str) -> None:
    """Refuse to go on with study ``study`` on ``data`` (its stored data source, ``stored``
    its description) when the data is no longer what the study's trials were trained on: a
    file edited or replaced at the same path. Its trials would be ranked against trials on
    other data, and the study's stored description overwritten."""
    expected = stored.get("fingerprint")
    if not expected:  # a study stored before data sources had fingerprints
        return
    path = _resolve_path(data)
    opts = normalise_options(stored.get("options"))
    got = _fingerprint(_detect_format(path), _input_fingerprint(path), stored.get("limit"), opts)
    if got != expected:
        what = (
            "its files changed (names, sizes or modification times)"
            if path.is_dir()
            else "its content changed"
        )
        raise DataError(
            f"{data}: {what} since study {study!r} started on it (data fingerprint "
            f"{expected}, now {got}); its trials were trained on the data as it was. Restore "
            "the data, or start a new --study on it"
        )


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "text-folder"
    name = path.name.lower()
    if name.endswith(".npz"):
        return "imdb-npz" if readers.numeric_npz_kind(path) == "imdb" else "numeric-npz"
    if name.endswith((".csv", ".csv.gz")):
        return "long-csv" if readers.is_long_csv(path) else "text-csv"
    return "text-jsonl"


#: The data formats that read each column option (the others have no columns to name).
OPTION_FORMATS = {
    "text_col": ("text-csv", "text-jsonl"),
    "label_col": ("text-csv", "text-jsonl", "long-csv"),
    "split_col": ("text-csv", "text-jsonl", "long-csv"),
}
FORMAT_TEXT = {
    "imdb-npz": "an IMDB-layout .npz",
    "numeric-npz": "a numeric .npz",
    "text-folder": "a folder of text files",
    "long-csv": "a long-format numeric CSV",
    "text-csv": "a text CSV",
    "text-jsonl": "a JSON Lines file",
}


def check_options_apply(data: str, requested: dict[str, Any]) -> None:
    """Refuse a column option (``requested``: the run's own, None where not given) that the
    data's format does not read, rather than ignore it."""
    named = {k: v for k, v in requested.items() if k in OPTION_FORMATS and v is not None}
    if not named:
        return
    fmt = _detect_format(_resolve_path(data))
    for key, value in named.items():
        if fmt not in OPTION_FORMATS[key]:
            readers_of = " and ".join(FORMAT_TEXT[f] for f in OPTION_FORMATS[key])
            raise UsageError(
                f"{OPTION_FLAGS[key]} {value}: {data} is {FORMAT_TEXT[fmt]}, which has no such "
                f"column (the option applies to {readers_of}); omit {OPTION_FLAGS[key]}"
            )


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 10:
        raise DataError(f"--limit {limit}: expected at least 10 training examples")


def _limit_indices(labels: np.ndarray, limit: int | None) -> np.ndarray | None:
    if limit is None or limit >= len(labels):
        return None
    return stratified_indices(labels, limit, np.random.default_rng(0))


def _check_classes(path: Path, labels: np.ndarray, label_col: str | None = None) -> None:
    classes = np.unique(labels)
    if len(classes) < 2:
        what = f"label column {label_col!r}" if label_col else "training labels"
        raise DataError(
            f"{path}: {what} holds a single class in the training part; expected at least two"
        )


def load_source(
    data: str, *, limit: int | None = None, options: dict[str, Any] | None = None
) -> DataSource:
    """Read ``data`` once per process and (data, limit, options); prepared arrays come from
    the disk cache when another process already made them."""
    opts = normalise_options(options)
    key = (data, limit, tuple(sorted(opts.items())))
    if key in _SOURCES:
        return _SOURCES[key]
    _check_limit(limit)
    path = _resolve_path(data)
    input_fp = _input_fingerprint(path)
    # The format is in the key: the same bytes under another name (a CSV renamed .csv.gz) are
    # read, and refused, as that name says, never served from the other format's arrays.
    fmt = _detect_format(path)
    cache_key = hashlib.sha256(
        json.dumps(
            [
                CACHE_VERSION,
                fmt,
                path.name.endswith(".gz"),  # the readers' test for gzip
                input_fp,
                limit,
                opts["text_col"],
                opts["label_col"],
                opts["split_col"],
                VALIDATION_FRACTION,
                SPLIT_SEED,
                TEST_FRACTION,
                TEST_SEED,
            ]
        ).encode()
    ).hexdigest()[:32]
    hit = cache.load(cache_key)
    if hit is None:
        arrays, meta = _build(fmt, path, input_fp, limit, opts)
        cache.save(cache_key, arrays, meta)
        meta = {**meta, "cache": "written"}
    else:
        arrays, meta = hit
        meta = {**meta, "cache": "hit"}
    source = _make_source(data, path, limit, opts, arrays, meta, cache_key)
    _SOURCES[key] = source
    return source


def _make_source(
    data: str,
    path: Path,
    limit: int | None,
    opts: dict[str, Any],
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    cache_key: str,
) -> DataSource:
    def seqs(split: str) -> TokenSequences:
        return TokenSequences(
            arrays[f"{split}_tokens"], arrays[f"{split}_offsets"], arrays[f"{split}_labels"]
        )

    train, test = seqs("train"), seqs("test")
    vocabulary = None
    if "vocabulary" in arrays:
        vocabulary = bytes(arrays["vocabulary"]).decode("utf-8").split("\n")
    description = {
        "source": data,
        "path": str(path.resolve()),
        "format": meta["format"],
        "kind": meta["kind"],
        "limit": limit,
        "validation_fraction": VALIDATION_FRACTION,
        "split_seed": SPLIT_SEED,
        "fingerprint": meta["fingerprint"],
        "train_examples": len(train),
        "test_examples": len(test),
        "test_split": meta["test_split"],
        "num_classes": meta["num_classes"],
        "classes": meta["classes"],
        "options": opts,
        "cache_key": cache_key,
    }
    if meta["test_split"] == "held-out":
        description.update(test_fraction=TEST_FRACTION, test_seed=TEST_SEED)
    for extra in ("split_col_used", "features", "feature_names", "vocabulary_size"):
        if meta.get(extra) is not None:
            description[extra] = meta[extra]
    return DataSource(
        name="imdb" if data == "imdb" else path.name,
        description=description,
        train=train,
        test=test,
        num_classes=int(meta["num_classes"]),
        base_fingerprint=meta["fingerprint"],
        kind=meta["kind"],
        oov_id=int(meta.get("oov_id", IMDB_OOV_CHAR)),
        features=meta.get("features"),
        bucketing=bool(opts["bucketing"]),
        classes=list(meta["classes"]),
        vocabulary=vocabulary,
        standardisation=meta.get("standardisation"),
        cache_status=meta.get("cache", ""),
    )


def _arrays(train: TokenSequences, test: TokenSequences) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for split, s in (("train", train), ("test", test)):
        out[f"{split}_tokens"] = s.tokens
        out[f"{split}_offsets"] = s.offsets
        out[f"{split}_labels"] = s.labels
    return out


def _build(
    fmt: str, path: Path, input_fp: str, limit: int | None, opts: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and prepare data of format ``fmt``: the arrays and metadata the cache holds."""
    if fmt == "imdb-npz":
        train, test = (TokenSequences(*split) for split in imdb.read_imdb_npz(path))
        idx = _limit_indices(train.labels, limit)
        if idx is not None:
            train = train.take(idx)
        _check_classes(path, train.labels)
        classes = [int(c) for c in np.unique(train.labels)]
        fingerprint = _fingerprint(fmt, input_fp, limit, opts)
        meta = {
            "format": fmt,
            "kind": "tokens",
            "oov_id": IMDB_OOV_CHAR,
            "num_classes": len(classes),
            "classes": classes,
            "test_split": "file",
            "fingerprint": fingerprint,
        }
        return _arrays(train, test), meta

    fingerprint = _fingerprint(fmt, input_fp, limit, opts)
    meta: dict[str, Any] = {"format": fmt, "fingerprint": fingerprint}
    label_col: str | None = opts["label_col"]
    if fmt in ("text-csv", "text-jsonl"):
        parts, meta["split_col_used"] = readers.read_text_table(
            path, opts["text_col"], opts["label_col"], opts["split_col"]
        )
    elif fmt == "text-folder":
        parts, label_col = readers.read_text_folder(path), None
    elif fmt == "numeric-npz":
        parts, label_col = readers.read_numeric_npz(path), None
    elif fmt == "long-csv":
        parts, meta["feature_names"] = readers.read_long_csv(
            path, opts["label_col"], opts["split_col"]
        )
        meta["split_col_used"] = opts["split_col"]
    else:  # pragma: no cover - _detect_format returns one of the above
        raise AssertionError(fmt)

    encoded, classes = readers.encode_labels({s: p[1] for s, p in parts.items()}, path, label_col)
    items = {s: p[0] for s, p in parts.items()}
    if "test" in items:
        train_items, y_train = items["train"], encoded["train"]
        test_items, y_test = items["test"], encoded["test"]
        meta["test_split"] = "file"
    else:
        everything, y_all = items.get("all") or items["train"], encoded.get("all")
        if y_all is None:
            y_all = encoded["train"]
        _check_classes(path, y_all, label_col)
        n_test = max(1, int(round(len(y_all) * TEST_FRACTION)))
        test_idx = np.sort(stratified_indices(y_all, n_test, np.random.default_rng(TEST_SEED)))
        keep = np.ones(len(y_all), dtype=bool)
        keep[test_idx] = False
        train_items = [everything[i] for i in np.flatnonzero(keep)]
        test_items = [everything[i] for i in test_idx]
        y_train, y_test = y_all[keep], y_all[test_idx]
        meta["test_split"] = "held-out"
    idx = _limit_indices(y_train, limit)
    if idx is not None:
        train_items = [train_items[i] for i in idx]
        y_train = y_train[idx]
    _check_classes(path, y_train, label_col)
    fit_idx, _val_idx = validation_split(y_train)
    meta["classes"] = classes
    meta["num_classes"] = len(classes)

    if fmt.startswith("text"):
        vectorizer = _fit_vocabulary([train_items[i] for i in fit_idx], path)
        train = _tokenise(vectorizer, train_items, y_train)
        test = _tokenise(vectorizer, test_items, y_test)
        vocab = [str(w) for w in vectorizer.get_vocabulary()]
        arrays = _arrays(train, test)
        arrays["vocabulary"] = np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8)
        meta.update(kind="tokens", oov_id=TEXT_OOV_ID, vocabulary_size=len(vocab))
        return arrays, meta

    train = TokenSequences.from_lists(train_items, y_train, dtype=np.float64)
    test = TokenSequences.from_lists(test_items, y_test, dtype=np.float64)
    width = train.tokens.shape[1] if train.tokens.ndim == 2 else 0
    if width == 0:
        raise DataError(f"{path}: sequences have no feature columns (F = 0)")
    fit_part = train.take(fit_idx).tokens
    if len(fit_part) == 0:
        raise DataError(f"{path}: the training sequences have no time steps")
    mean = fit_part.mean(axis=0)
    std = fit_part.std(axis=0)
    std[std < 1e-12] = 1.0
    train = TokenSequences(_standardise(train.tokens, mean, std), train.offsets, train.labels)
    test = TokenSequences(_standardise(test.tokens, mean, std), test.offsets, test.labels)
    meta.update(
        kind="numeric",
        features=int(width),
        standardisation={"mean": mean.tolist(), "std": std.tolist()},
    )
    return _arrays(train, test), meta


def _standardise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = ((values - mean) / std).astype(np.float32)
    zero = ~out.any(axis=1)
    out[zero, 0] = ZERO_STEP_NUDGE
    return out


def _fit_vocabulary(texts: list[str], path: Path) -> Any:
    """Keras' TextVectorization fitted on the training part only (no validation, no test)."""
    from search import tfenv

    tfenv.quiet_import(tensorflow_needed=True)
    import keras
    import tensorflow as tf

    # Dense output (each chunk padded with 0 to its longest text): ragged output exists under
    # the TensorFlow backend only, and the vectoriser is used under JAX too.
    vectorizer = keras.layers.TextVectorization(output_mode="int")
    vectorizer.adapt(
        tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string)).batch(1024)
    )
    if vectorizer.vocabulary_size() <= 2:
        raise DataError(f"{path}: the training texts hold no words")
    return vectorizer


def _tokenise(vectorizer: Any, texts: list[str], labels: np.ndarray) -> TokenSequences:
    import tensorflow as tf

    flat: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for i in range(0, len(texts), 2048):
        dense = np.asarray(vectorizer(tf.constant(texts[i : i + 2048], dtype=tf.string)))
        # 0 pads each row's end only (1 is out-of-vocabulary), so the row's tokens are its
        # non-zero prefix
        real = dense != 0
        flat.append(dense[real].astype(np.int32))
        lengths.append(real.sum(axis=1).astype(np.int64))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    tokens = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int32)
    return TokenSequences(tokens, offsets, np.asarray(labels, dtype=np.int64))
