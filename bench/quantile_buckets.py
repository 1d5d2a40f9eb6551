"""rnnsearch's bucketing before the widths were chosen to pad least: the baseline of
``bench/compiled_steps.py --modes rnnsearch-jax-quantile``.

Widths were the quantiles of the length distribution (as many rows per width), rounded up to
multiples of 8; training batches were cut from pools of 32 batches' rows sorted by length, so
a batch could straddle two widths and take the wider. ``install()`` puts both back into
``search.datasets.batching`` for the process that calls it.
"""

from __future__ import annotations

import numpy as np

from search.datasets.batching import length_batches as _length_batches

BUCKET_POOL = 32


def quantile_widths(
    lengths: np.ndarray, maxlen: int, max_buckets: int = 8, multiple: int = 8
) -> tuple[int, ...]:
    maxlen = int(maxlen)
    clipped = np.clip(np.asarray(lengths, dtype=np.int64), 1, maxlen)
    if clipped.size == 0:
        return (maxlen,)
    levels = np.linspace(0.0, 1.0, max_buckets + 1)[1:]
    quantiles = np.quantile(clipped, levels, method="higher")
    return tuple(sorted({min(maxlen, -(-int(q) // multiple) * multiple) for q in quantiles}))


def pooled_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    widths: tuple[int, ...] | None = None,
    fill_last: bool = False,
) -> list[np.ndarray]:
    if rng is None:  # validation batches: all rows sorted, as rnnsearch still does
        return _length_batches(lengths, batch_size)
    n = len(lengths)
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


def install() -> None:
    from search.datasets import batching

    batching.bucket_widths = quantile_widths
    batching.length_batches = pooled_batches
