"""What a trained model costs to deploy: parameters, saved size and inference latency.

Measured once per trial by the runner (``search.trials``), on the machine that trained it, so
the figures of one study compare models under the same conditions. Latency is the median of a
few timed ``predict_on_batch`` calls after a warm-up (the first call traces and compiles the
predict function; its time says nothing about serving):

* ``latency_ms``: one batch of 256 validation examples (repeated if the validation split is
  smaller), padded to the configuration's ``maxlen``: the throughput figure, which grows with
  the model's work.
* ``latency_single_ms``: one validation example: the online-serving figure, dominated by
  per-call overhead for small RNNs.

Cost per trial: one ``.keras`` save, and for each of the two sizes two warm-up calls plus timed
calls for about MIN_SECONDS (at least MIN_REPEATS); see docs/multi-objective.md for figures.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BATCH = 256
#: Untimed calls first: the first traces and compiles the predict function for the shape (the
#: second settles what the first leaves: measured ~40% slower without it on a small model).
WARMUP = 2
#: Timed calls: at least MIN_REPEATS, then more until MIN_SECONDS have been spent timing (or
#: MAX_REPEATS calls): a big model's batch (up to a second on 2 shared cores) is timed 3 times,
#: a small model's dozens of times, so contention on a shared machine averages out where it
#: costs little.
MIN_REPEATS = 3
MAX_REPEATS = 30
MIN_SECONDS = 0.3


@dataclass(frozen=True)
class ModelFigures:
    params: int
    model_mb: float
    latency_ms: float
    latency_single_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def saved_size_mb(model: Any) -> float:
    """The size of ``model`` saved as a ``.keras`` file, in MB (10^6 bytes)."""
    with tempfile.TemporaryDirectory(prefix="rnnsearch-size-") as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        return os.path.getsize(path) / 1e6


def median_latency_ms(model: Any, x: np.ndarray) -> float:
    """Median milliseconds of ``model.predict_on_batch(x)`` after ``WARMUP`` untimed calls."""
    for _ in range(WARMUP):
        model.predict_on_batch(x)
    times: list[float] = []
    while len(times) < MIN_REPEATS or (
        sum(times) < MIN_SECONDS * 1000.0 and len(times) < MAX_REPEATS
    ):
        started = time.perf_counter()
        model.predict_on_batch(x)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(statistics.median(times))


def latency_inputs(x_val: np.ndarray, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``batch`` validation rows (cycled when there are fewer) and a single row."""
    if len(x_val) == 0:
        raise ValueError("no validation examples to time the model on")
    rows = np.resize(np.arange(len(x_val)), batch)
    return np.ascontiguousarray(x_val[rows]), np.ascontiguousarray(x_val[:1])


def measure_model(model: Any, x_val: np.ndarray) -> ModelFigures:
    """Parameters, saved size and median latencies (batch of 256, one example) of ``model``."""
    batch, single = latency_inputs(x_val)
    return ModelFigures(
        params=int(model.count_params()),
        model_mb=round(saved_size_mb(model), 4),
        latency_ms=round(median_latency_ms(model, batch), 3),
        latency_single_ms=round(median_latency_ms(model, single), 3),
    )
