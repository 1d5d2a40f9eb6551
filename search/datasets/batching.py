"""Bucketing: batches of similar sequence lengths, each padded to one of a few fixed widths.

Padding every review to ``maxlen`` makes a 40-word review cost as much as a 400-word one. Here
rows are grouped by length and each batch keeps only as many steps as the smallest *bucket
width* that holds its longest row. The widths are a handful (at most :data:`MAX_BUCKETS`) taken
from the data's length distribution, so a compiled training step (XLA, or JAX's jit) is built
once per width and then reused; a width per batch (the batch's own longest row) would give
nearly every batch a new shape and rebuild the compiled step each time. Every training batch
has exactly ``batch_size`` rows (the last one is filled up with rows drawn again), so the batch
dimension never brings a new shape either.

What padding is left is masked where it changes the result (post-padding, numeric input);
leading pre-padding of a length-sorted batch is a few steps and stays unmasked, as with fixed
length, since a mask costs ~1.9x per step. Nothing is truncated here: rows are already cut at
``maxlen`` by :mod:`search.data`, and the largest width holds the longest row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Training batches are sorted by length within pools of this many batches.
BUCKET_POOL = 32
#: At most this many widths per data set: each is one compilation of the training step.
MAX_BUCKETS = 8
#: Widths are multiples of this (vector-friendly shapes), except where maxlen caps them.
WIDTH_MULTIPLE = 8


def bucket_widths(
    lengths: np.ndarray,
    maxlen: int,
    max_buckets: int = MAX_BUCKETS,
    multiple: int = WIDTH_MULTIPLE,
) -> tuple[int, ...]:
    """Increasing batch widths for rows of these lengths: at most ``max_buckets``, the largest
    one holds the longest row (``lengths`` are after truncation at ``maxlen``), none exceeds
    ``maxlen``.

    The widths are quantiles of the length distribution (equal numbers of rows between two
    widths, so no width serves only a few batches), rounded up to a multiple of ``multiple``.
    """
    if max_buckets < 1:
        raise ValueError(f"max_buckets: expected at least 1, got {max_buckets}")
    maxlen = int(maxlen)
    clipped = np.clip(np.asarray(lengths, dtype=np.int64), 1, maxlen)
    if clipped.size == 0:
        return (maxlen,)
    levels = np.linspace(0.0, 1.0, max_buckets + 1)[1:]
    quantiles = np.quantile(clipped, levels, method="higher")
    rounded = {min(maxlen, -(-int(q) // multiple) * multiple) for q in quantiles}
    return tuple(sorted(rounded))


def width_for(longest: int, widths: tuple[int, ...]) -> int:
    """The smallest width that holds a row of length ``longest`` (the largest if none does)."""
    index = int(np.searchsorted(widths, max(1, longest), side="left"))
    return widths[min(index, len(widths) - 1)]


def length_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    fill_last: bool = False,
) -> list[np.ndarray]:
    """Row indices of each batch, rows of similar length together.

    With ``rng`` (training): shuffle, sort each pool of ``BUCKET_POOL`` batches by length, cut it
    into batches and shuffle the batches, so an epoch still sees the rows in a random order.
    Without (validation): all rows sorted by length. Either way ceil(N / batch_size) batches.
    ``fill_last`` (training only): the last, short batch is filled up to ``batch_size`` with rows
    drawn at random from the others, so that every batch has the same number of rows.
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    short = n % batch_size
    if fill_last and short and n > batch_size:
        order = np.concatenate([order, rng.choice(order[:-short], batch_size - short, False)])
    pool = batch_size * BUCKET_POOL
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        part = order[start : start + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
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
        return length_batches(self.lengths, self.batch_size, self._rng, fill_last=True)

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
    train = length_batches(data.len_train, batch_size, np.random.default_rng(0), fill_last=True)
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
