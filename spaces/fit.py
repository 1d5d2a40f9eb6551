"""A space fitted to the data it will search: sequence length, vocabulary and sizes from statistics.

A space file may say ``fit = "data"`` (the built-in ``default`` does). Such a space is a template:
before a new study starts, :func:`fit_space` rewrites its data-dependent dimensions from the
training data's statistics (:class:`DataStats`), and the study stores the fitted space, so resumes
and workers run exactly the same space without reading the statistics again.

What is fitted (each rule is a pure function of :class:`DataStats`, documented in
docs/default-space.md):

- ``maxlen``: the 50th, 90th and 99th percentiles of the training sequences' lengths, rounded up to
  two significant digits and capped at :data:`MAXLEN_CAP`; one value (fixed) when all sequences
  have the same length.
- ``vocab_size`` (token data): a quarter of and all the words seen at least twice in the training
  part (at most :data:`VOCAB_CAP`), plus the reserved ids (padding, out of vocabulary).
- ``embedding_dim`` (token data): the power of two nearest sqrt(N) / 2 (32 to 128, N the training
  examples) and half of it.
- ``units``: a log range up to the power of two nearest 2 sqrt(N) (64 to 256), from a sixteenth
  of that.
- ``batch_size``: the power of two nearest N / 100, 16 to 64.
- numeric data: ``vocab_size`` and ``embedding_dim`` are dropped (there is no embedding).

Start configurations are rescaled the same way: a value keeps its rank among a choice's values
(the shorter of two maxlens stays the shortest) and its log position within a range.

Pure Python: no TensorFlow, no Optuna, no NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from spaces.errors import SpaceError
from spaces.space import (
    FIT_KINDS,
    TOKEN_ONLY,
    Choice,
    Dimension,
    Fixed,
    FloatRange,
    IntRange,
    Space,
    Value,
)

#: Longest maxlen a fitted space offers: an RNN's time per epoch grows with the steps it runs.
MAXLEN_CAP = 1000
#: Largest vocabulary a fitted space offers (embedding tables beyond it cost memory, not accuracy).
VOCAB_CAP = 50_000
#: Fewest words worth a choice of vocabularies; below it the whole vocabulary is the one choice.
SMALL_VOCAB = 200
EMBEDDING_MIN, EMBEDDING_MAX = 32, 128
UNITS_MIN_HIGH, UNITS_MAX_HIGH = 64, 256
UNITS_FLOOR = 4
BATCH_MIN, BATCH_MAX = 16, 64
#: Dimensions whose values :func:`fit_space` derives from the data.
FITTED = ("maxlen", "vocab_size", "embedding_dim", "units", "batch_size")


@dataclass(frozen=True)
class DataStats:
    """What :func:`fit_space` reads of the training data (its part less the validation rows)."""

    kind: str  # "tokens" or "numeric"
    #: Training examples a trial fits on (the validation part excluded).
    examples: int
    num_classes: int
    length_min: int
    length_p50: int
    length_p90: int
    length_p99: int
    length_max: int
    #: Token data: distinct words seen at least twice in the training part.
    words_seen_twice: int | None = None
    #: Token data: ids below this are reserved (padding, start, out of vocabulary).
    first_word_id: int | None = None
    #: Numeric data: features per step.
    features: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("tokens", "numeric"):
            raise SpaceError(f"data statistics: kind {self.kind!r}: expected tokens or numeric")
        if self.examples < 1:
            raise SpaceError(f"data statistics: expected at least one example, got {self.examples}")
        if self.kind == "tokens" and (self.words_seen_twice is None or self.first_word_id is None):
            raise SpaceError("data statistics: token data needs words_seen_twice and first_word_id")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DataStats:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def _round_up(value: float, digits: int = 2) -> int:
    """``value`` rounded up to ``digits`` significant digits (178 -> 180, 467 -> 470, 7 -> 7)."""
    value = max(1.0, float(value))
    scale = 10 ** max(0, math.floor(math.log10(value)) + 1 - digits)
    return int(math.ceil(value / scale) * scale)


def _pow2_round(value: float) -> int:
    return 1 << max(0, int(round(math.log2(max(1.0, value)))))


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def fitted_maxlens(stats: DataStats) -> tuple[int, ...]:
    if stats.length_min == stats.length_max:
        return (min(max(1, stats.length_max), MAXLEN_CAP),)
    picks = (stats.length_p50, stats.length_p90, stats.length_p99)
    return tuple(sorted({min(_round_up(p), MAXLEN_CAP) for p in picks}))


def fitted_vocab_sizes(stats: DataStats) -> tuple[int, ...]:
    assert stats.words_seen_twice is not None and stats.first_word_id is not None
    words = min(max(1, stats.words_seen_twice), VOCAB_CAP)
    if words < SMALL_VOCAB:
        return (words + stats.first_word_id,)
    quarter = _round_up(words / 4)
    return tuple(sorted({quarter + stats.first_word_id, _round_up(words) + stats.first_word_id}))


def fitted_embedding_dims(stats: DataStats) -> tuple[int, ...]:
    top = _clamp(_pow2_round(math.sqrt(stats.examples) / 2), EMBEDDING_MIN, EMBEDDING_MAX)
    return (top // 2, top)


def fitted_units(stats: DataStats) -> tuple[int, int]:
    high = _clamp(_pow2_round(2 * math.sqrt(stats.examples)), UNITS_MIN_HIGH, UNITS_MAX_HIGH)
    return max(UNITS_FLOOR, high // 16), high


def fitted_batch_size(stats: DataStats) -> int:
    return _clamp(_pow2_round(stats.examples / 100), BATCH_MIN, BATCH_MAX)


def _values_dim(name: str, values: tuple[int, ...], when: Any) -> Dimension:
    return Fixed(name, values[0], when) if len(values) == 1 else Choice(name, values, when)


def _fit_dimension(dim: Dimension, stats: DataStats) -> Dimension | None:
    """The fitted form of one dimension of the template (None: dropped for this data)."""
    if dim.name in TOKEN_ONLY and stats.kind == "numeric":
        return None
    if dim.name == "maxlen":
        return _values_dim("maxlen", fitted_maxlens(stats), dim.when)
    if dim.name == "vocab_size":
        return _values_dim("vocab_size", fitted_vocab_sizes(stats), dim.when)
    if dim.name == "embedding_dim":
        return _values_dim("embedding_dim", fitted_embedding_dims(stats), dim.when)
    if dim.name == "units":
        low, high = fitted_units(stats)
        return IntRange("units", low, high, 1, True, dim.when)
    if dim.name == "batch_size":
        return Fixed("batch_size", fitted_batch_size(stats), dim.when)
    return dim


def _rescale(old: Dimension, new: Dimension, value: Value) -> Value:
    """A start point's value moved from the template's dimension to the fitted one."""
    if isinstance(new, Fixed):
        return new.value
    if isinstance(new, Choice):
        if isinstance(old, Choice) and value in old.values:
            rank = old.values.index(value)
        else:  # the template fixed it (or it lies outside): start from the smallest choice
            rank = 0
        return new.values[min(rank, len(new.values) - 1)]
    if isinstance(new, (IntRange, FloatRange)) and isinstance(old, (IntRange, FloatRange)):
        assert isinstance(value, (int, float))
        if old.high > old.low and old.low > 0 and new.low > 0:
            share = math.log(value / old.low) / math.log(old.high / old.low)
            scaled = new.low * (new.high / new.low) ** min(1.0, max(0.0, share))
        else:
            scaled = min(max(value, new.low), new.high)
        return int(round(scaled)) if isinstance(new, IntRange) else float(scaled)
    return value


def fit_space(template: Space, stats: DataStats) -> Space:
    """``template`` with its data-dependent dimensions and start points fitted to ``stats``.

    The result is an ordinary space (no ``fit``): what a study stores and runs.
    """
    if template.fit is None:
        return template
    dims: list[Dimension] = []
    old_by_name: dict[str, Dimension] = {}
    new_by_name: dict[str, Dimension] = {}
    for dim in template.dimensions:
        new = _fit_dimension(dim, stats)
        if new is None:
            continue
        if dim.when is not None and dim.when.parent not in new_by_name:
            continue  # its parent was dropped: the dimension can never apply
        dims.append(new)
        old_by_name[dim.name] = dim
        new_by_name[dim.name] = new
    what = "token sequences" if stats.kind == "tokens" else "numeric sequences"
    fitted = Space(
        name=template.name,
        dimensions=tuple(dims),
        description=(
            f"{template.description} Fitted to {what}: {stats.examples} training examples, "
            f"{stats.num_classes} classes, lengths {stats.length_min}-{stats.length_max} "
            f"(median {stats.length_p50})."
        ).strip(),
    )
    start = []
    for point in template.start:
        moved: dict[str, Value] = {}
        for name, value in point.items():
            new = new_by_name.get(name)
            if new is None or isinstance(new, Fixed):
                continue
            moved[name] = _rescale(old_by_name[name], new, value) if name in FITTED else value
        for name, new in new_by_name.items():
            old = old_by_name[name]
            if name not in moved and isinstance(old, Fixed) and not isinstance(new, Fixed):
                # fixed in the template, searched once fitted: the point takes the nearest value
                moved[name] = _rescale(old, new, old.value)
        start.append(moved)
    # Validated like a start point read from a file (every active searched dimension, in range).
    return Space.from_dict({**fitted.to_dict(), "start": start}, source=f"{template.name} (fitted)")


def fit_record(template: Space, stats: DataStats) -> dict[str, Any]:
    """What a study stores about the fitting: the template's identity and the statistics."""
    return {
        "template": template.name,
        "template_fingerprint": template.fingerprint,
        "stats": stats.to_dict(),
        "rules": "docs/default-space.md",
    }


def is_template_of(space: Space, record: Mapping[str, Any] | None) -> bool:
    """True when ``space`` is the template a study's fitted space was made from."""
    return bool(
        space.fit is not None and record and record.get("template_fingerprint") == space.fingerprint
    )


__all__ = [
    "FIT_KINDS",
    "MAXLEN_CAP",
    "VOCAB_CAP",
    "DataStats",
    "fit_record",
    "fit_space",
    "is_template_of",
]
