"""Bucketing: batches of similar sequence lengths, each cut to its longest row.

Padding every review to ``maxlen`` makes a 40-word review cost as much as a 400-word one. Here
rows are grouped by length and each batch keeps only as many steps as its longest row; the
model takes any length (``InputSpec.variable_length``). What padding is left is masked where it
changes the result (post-padding, numeric input); leading pre-padding of a length-sorted batch
is a few steps and stays unmasked, as with fixed length, since a mask costs ~1.9x per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Training batches are sorted by length within pools of this many batches.
BUCKET_POOL = 32


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Row indices of each batch, rows of similar length together.

    With ``rng`` (training): shuffle, sort each pool of ``BUCKET_POOL`` batches by length, cut it
    into batches and shuffle the batches, so an epoch still sees the rows in a random order.
    Without (validation): all rows sorted by length. Either way ceil(N / batch_size) batches.
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    pool = batch_size * BUCKET_POOL
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        part = order[start : start + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def length_batches_dataset(
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    padding: str,
    *,
    seed: int | None,
) -> Any:
    """A tf.data pipeline of (x, y) batches cut to their longest row.

    ``x`` is padded to maxlen ("pre": the sequence at the end, "post": at the start); a batch
    keeps the last (pre) or first (post) ``max(lengths)`` steps, which hold every row's data. A
    new batch order is drawn for each epoch from ``seed``; ``seed=None`` sorts by length.
    """
    import tensorflow as tf

    maxlen = x.shape[1]
    rng = np.random.default_rng(seed) if seed is not None else None
    n_batches = -(-len(y) // batch_size)

    def batches() -> Any:
        for idx in length_batches(lengths, batch_size, rng):
            width = max(1, int(lengths[idx].max()))
            rows = x[idx]
            yield (rows[:, maxlen - width :] if padding == "pre" else rows[:, :width]), y[idx]

    signature = (
        tf.TensorSpec((None, None, *x.shape[2:]), tf.as_dtype(x.dtype)),
        tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)),
    )
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


def fit_inputs(data: Any, batch_size: int) -> dict[str, Any]:
    """Keyword arguments of ``model.fit`` for prepared data: by-length batches when the data
    asks for bucketing, else the padded arrays shuffled as usual."""
    bucketing = bool(getattr(data, "bucketing", False))
    return {
        **training_inputs(
            data.x_train, data.y_train, data.len_train, batch_size, data.padding, bucketing
        ),
        "validation_data": (
            length_batches_dataset(
                data.x_val, data.y_val, data.len_val, batch_size, data.padding, seed=None
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
) -> dict[str, Any]:
    """``model.fit`` keyword arguments for training data, by length or padded and shuffled."""
    if bucketing and lengths is not None:
        seed = int(np.random.randint(0, 2**31 - 1))  # follows keras.utils.set_random_seed
        return {
            "x": length_batches_dataset(x, y, lengths, batch_size, padding, seed=seed),
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
