"""Bucketing: batches of similar sequence lengths, each padded to one of a few fixed widths.

Padding every review to ``maxlen`` makes a 40-word review cost as much as a 400-word one. Here
rows are grouped by length and each batch keeps only as many steps as the smallest *bucket
width* that holds its longest row. The widths are a handful (at most :data:`MAX_BUCKETS`), those
that pad the data's lengths least, so a compiled training step (XLA, or JAX's jit) is built
once per width and then reused; a width per batch (the batch's own longest row) would give
nearly every batch a new shape and rebuild the compiled step each time. Every training batch
has exactly ``batch_size`` rows (the last one is filled up with rows drawn again), so the batch
dimension never brings a new shape either.

What padding is left is masked where it changes the result (post-padding, numeric input);
leading pre-padding up to a batch's width stays unmasked, as with fixed length, since a mask
costs ~1.9x per step. Nothing is truncated here: rows are already cut at
``maxlen`` by :mod:`search.data`, and the largest width holds the longest row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: At most this many widths per data set: each is one compilation of the training step.
MAX_BUCKETS = 8
#: Widths are multiples of this (vector-friendly shapes), except where maxlen caps them.
WIDTH_MULTIPLE = 8
#: A width is worth its compilations (training and validation step) only if it saves at least
#: this fraction of an epoch's padded steps: on IMDB, 2 widths at maxlen 100, 5 at 200, 8 from
#: 400 (bench/compiled_steps.py: each width costs about 0.5 s of compiling a trial).
WIDTH_WORTH = 0.01


def bucket_widths(
    lengths: np.ndarray,
    maxlen: int,
    max_buckets: int = MAX_BUCKETS,
    multiple: int = WIDTH_MULTIPLE,
) -> tuple[int, ...]:
    """Increasing batch widths for rows of these lengths: at most ``max_buckets``, the largest
    one holds the longest row (``lengths`` are after truncation at ``maxlen``), none exceeds
    ``maxlen``.

    The widths are those that pad the rows least: with every row padded to the smallest width
    that holds it, no other choice of as many multiples of ``multiple`` (the largest capped at
    ``maxlen``) gives fewer steps; dynamic programming over the candidate widths finds it
    exactly. Fewer than ``max_buckets`` widths are returned when one more would save less than
    :data:`WIDTH_WORTH` of the steps.
    """
    if max_buckets < 1:
        raise ValueError(f"max_buckets: expected at least 1, got {max_buckets}")
    maxlen = int(maxlen)
    clipped = np.sort(np.clip(np.asarray(lengths, dtype=np.int64), 1, maxlen))
    if clipped.size == 0:
        return (maxlen,)
    top = min(maxlen, -(-int(clipped[-1]) // multiple) * multiple)
    candidates = np.array([*range(multiple, top, multiple), top], dtype=np.int64)
    # rows each candidate width holds, counted from the shortest row
    held = np.searchsorted(clipped, candidates, side="right")
    m, k = len(candidates), min(max_buckets, len(candidates))
    # steps[t, j]: the least steps of the rows up to candidates[j] in t widths, the largest of
    # them candidates[j]; previous[t, j]: the width below it in that least choice
    steps = np.full((k + 1, m), np.inf)
    previous = np.zeros((k + 1, m), dtype=np.int64)
    steps[1] = candidates * held
    for t in range(2, k + 1):
        for j in range(1, m):
            options = steps[t - 1, :j] + candidates[j] * (held[j] - held[:j])
            previous[t, j] = int(np.argmin(options))
            steps[t, j] = options[previous[t, j]]
    least = steps[:, m - 1]
    t = 1
    while t < k and least[t] - least[t + 1] >= WIDTH_WORTH * least[t]:
        t += 1
    chosen = [m - 1]
    while t > 1:
        chosen.append(int(previous[t, chosen[-1]]))
        t -= 1
    return tuple(int(candidates[j]) for j in sorted(chosen))


def width_for(longest: int, widths: tuple[int, ...]) -> int:
    """The smallest width that holds a row of length ``longest`` (the largest if none does)."""
    index = int(np.searchsorted(widths, max(1, longest), side="left"))
    return widths[min(index, len(widths) - 1)]


def length_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    widths: tuple[int, ...] | None = None,
    fill_last: bool = False,
) -> list[np.ndarray]:
    """Row indices of each batch, rows of similar length together.

    With ``rng`` (training): each row goes to the bucket of the smallest of ``widths`` that
    holds it (default: :func:`bucket_widths` of these lengths); each bucket's rows are
    shuffled and cut into batches, the rows left over (fewer than a batch) join the next wider
    bucket, and the batches are shuffled, so an epoch sees the rows in a random order and no
    batch is wider than its rows' bucket. Without (validation): all rows sorted by length.
    Either way ceil(N / batch_size) batches. ``fill_last`` (training only): the last, short
    batch is filled up to ``batch_size`` with rows drawn at random from the others, so that
    every batch has the same number of rows.
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    lengths = np.asarray(lengths)
    if widths is None:
        widths = bucket_widths(lengths, int(lengths.max()) if n else 1)
    bucket = np.searchsorted(np.asarray(widths), np.maximum(lengths, 1), side="left")
    batches: list[np.ndarray] = []
    left = np.zeros(0, dtype=np.int64)
    for b in range(len(widths)):
        rows = np.concatenate([left, rng.permutation(np.flatnonzero(bucket == b))])
        full = len(rows) - len(rows) % batch_size
        batches.extend(rows[i : i + batch_size] for i in range(0, full, batch_size))
        left = rows[full:]
    # rows longer than the widest width (widths of other data) go last, in one bucket
    rows = np.concatenate([left, rng.permutation(np.flatnonzero(bucket >= len(widths)))])
    full = len(rows) - len(rows) % batch_size
    batches.extend(rows[i : i + batch_size] for i in range(0, full, batch_size))
    if full < len(rows):
        last = rows[full:]
        if fill_last and n > batch_size:
            others = np.setdiff1d(np.arange(n), last, assume_unique=True)
            last = np.concatenate([last, rng.choice(others, batch_size - len(last), False)])
        batches.append(last)
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class LengthBatches:
    """The batches of one data set by length: a new order each epoch (``seed``) or sorted
    (``seed=None``), each batch padded to its bucket width.

    ``x`` is padded to maxlen ("pre": the sequence at the end, "post": at the start); a batch
    keeps the last (pre) or first (post) ``width`` steps, which hold every row's data.
    """

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray
    batch_size: int
    padding: str
    widths: tuple[int, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed) if self.seed is not None else None
        self._plan = self._draw()

    def _draw(self) -> list[np.ndarray]:
        return length_batches(
            self.lengths, self.batch_size, self._rng, widths=self.widths, fill_last=True
        )

    def __len__(self) -> int:
        return len(self._plan)

    def batch(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self._plan[i]
        width = width_for(int(self.lengths[idx].max()), self.widths)
        rows = self.x[idx]
        maxlen = self.x.shape[1]
        cut = rows[:, maxlen - width :] if self.padding == "pre" else rows[:, :width]
        return cut, self.y[idx]

    def epoch(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One pass over the batches, then a new order for the next pass (training)."""
        for i in range(len(self._plan)):
            yield self.batch(i)
        self.next_epoch()

    def next_epoch(self) -> None:
        if self._rng is not None:
            self._plan = self._draw()


def length_batches_dataset(
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    padding: str,
    *,
    seed: int | None,
    widths: tuple[int, ...] | None = None,
) -> Any:
    """Batches by length in the form ``model.fit`` takes under the running Keras backend: a
    tf.data pipeline under TensorFlow (shapes declared variable), a ``keras.utils.PyDataset``
    elsewhere (JAX needs no TensorFlow then). ``widths`` default to :func:`bucket_widths`."""
    import keras

    maxlen = x.shape[1]
    batches = LengthBatches(
        x, y, lengths, batch_size, padding, widths or bucket_widths(lengths, maxlen), seed
    )
    if keras.backend.backend() != "tensorflow":
        return _PyBatches(batches)
    import tensorflow as tf

    signature = (
        tf.TensorSpec((None, None, *x.shape[2:]), tf.as_dtype(x.dtype)),
        tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)),
    )
    dataset = tf.data.Dataset.from_generator(batches.epoch, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(2)


def _PyBatches(batches: LengthBatches) -> Any:  # noqa: N802 - builds a keras class lazily
    import keras

    class PyBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.batches = batches

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            return self.batches.batch(i)

        def on_epoch_end(self) -> None:
            self.batches.next_epoch()

    return PyBatches()


def study_widths(data: Any) -> tuple[int, ...]:
    """The widths prepared data trains and validates on: one set for both, so a validation
    batch reuses a width the training step was compiled for."""
    lengths = np.concatenate([data.len_train, data.len_val])
    return bucket_widths(lengths, data.x_train.shape[1])


def step_shapes(data: Any, batch_size: int) -> int:
    """How many distinct batch shapes ``model.fit(**fit_inputs(data, batch_size))`` trains and
    validates on: with compiled steps, each is one compilation (training and validation steps
    apart), so this is the number of compilations of a trial under XLA."""

    def fixed(n: int) -> int:
        return len({min(n, batch_size), n % batch_size} - {0})

    if not getattr(data, "bucketing", False):
        return fixed(len(data.y_train)) + fixed(len(data.y_val))
    widths = study_widths(data)
    train = length_batches(
        data.len_train, batch_size, np.random.default_rng(0), widths=widths, fill_last=True
    )
    val = length_batches(data.len_val, batch_size)
    return sum(
        len({(len(i), width_for(int(lengths[i].max()), widths)) for i in plan})
        for plan, lengths in ((train, data.len_train), (val, data.len_val))
    )


def fit_inputs(data: Any, batch_size: int) -> dict[str, Any]:
    """Keyword arguments of ``model.fit`` for prepared data: by-length batches when the data
    asks for bucketing (training and validation share one set of widths), else the padded
    arrays shuffled as usual."""
    bucketing = bool(getattr(data, "bucketing", False))
    widths = study_widths(data) if bucketing else None
    return {
        **training_inputs(
            data.x_train,
            data.y_train,
            data.len_train,
            batch_size,
            data.padding,
            bucketing,
            widths=widths,
        ),
        "validation_data": (
            length_batches_dataset(
                data.x_val,
                data.y_val,
                data.len_val,
                batch_size,
                data.padding,
                seed=None,
                widths=widths,
            )
            if bucketing
            else (data.x_val, data.y_val)
        ),
    }


def training_inputs(
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray | None,
    batch_size: int,
    padding: str,
    bucketing: bool,
    *,
    widths: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """``model.fit`` keyword arguments for training data, by length or padded and shuffled."""
    if bucketing and lengths is not None:
        seed = int(np.random.randint(0, 2**31 - 1))  # follows keras.utils.set_random_seed
        return {
            "x": length_batches_dataset(
                x, y, lengths, batch_size, padding, seed=seed, widths=widths
            ),
            "shuffle": False,  # the batch order is drawn anew each epoch
        }
    return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}


def evaluation_inputs(
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray | None,
    batch_size: int,
    padding: str,
    bucketing: bool,
) -> dict[str, Any]:
    """``model.evaluate`` keyword arguments: the same batching the model was trained with, so
    that a model trained on by-length batches is scored on them (validation and test alike)."""
    if bucketing and lengths is not None:
        return {"x": length_batches_dataset(x, y, lengths, batch_size, padding, seed=None)}
    return {"x": x, "y": y, "batch_size": batch_size}
