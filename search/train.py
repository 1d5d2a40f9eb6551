"""Train a built model on prepared data, reporting every finished epoch.

:func:`fit` is a pure function of (model, data, config, reporter): it knows nothing of engines or
storage. The reporter decides what an epoch means (store it, prune the trial, checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import keras

from search.data import PreparedData
from search.datasets.batching import fit_inputs, step_shapes
from search.errors import TrialFailed

METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


class EpochReporter(Protocol):
    def epoch_done(
        self, model: keras.Model, epoch: int, metrics: dict[str, float], seconds: float
    ) -> bool:
        """Called after each epoch (1-based) with its metrics; return True to stop training."""


@dataclass
class FitResult:
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    #: Compilations of training/validation steps during this fit and the seconds they took
    #: (None where the backend does not report them: TensorFlow's XLA, see :class:`CompileMeter`).
    compilations: int | None = None
    compile_seconds: float | None = None

    @property
    def best_epoch(self) -> int | None:
        scored = [
            (h["val_accuracy"], -i) for i, h in enumerate(self.history) if "val_accuracy" in h
        ]
        return -max(scored)[1] + 1 if scored else None

    @property
    def best_val_accuracy(self) -> float | None:
        values = [h["val_accuracy"] for h in self.history if "val_accuracy" in h]
        return max(values) if values else None


class _ReportingCallback(keras.callbacks.Callback):
    def __init__(self, reporter: EpochReporter, result: FitResult) -> None:
        super().__init__()
        self.reporter = reporter
        self.result = result
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        metrics = {k: float(v) for k, v in (logs or {}).items() if k in METRIC_KEYS}
        if any(math.isnan(v) or math.isinf(v) for v in metrics.values()):
            self.model.stop_training = True
            raise TrialFailed(f"training diverged at epoch {epoch + 1}: {metrics}")
        self.result.history.append(metrics)
        self.result.epochs_run = epoch + 1
        if self.reporter.epoch_done(self.model, epoch + 1, metrics, seconds):
            self.result.stopped_early = True
            self.model.stop_training = True


_compile_events = {"count": 0, "seconds": 0.0}
_listening = False


def _on_jax_event(event: str, duration: float, **_: Any) -> None:
    from jax._src.dispatch import BACKEND_COMPILE_EVENT

    if event == BACKEND_COMPILE_EVENT:
        _compile_events["count"] += 1
        _compile_events["seconds"] += float(duration)


class CompileMeter:
    """Counts the compilations (and their seconds) that happen while a block runs.

    JAX reports each backend compilation (``jax.monitoring``), so the count and the seconds are
    exact. TensorFlow's XLA does not: there the count is the number of distinct batch shapes the
    block trained and validated on (each compiles once) and the seconds stay None; the first
    epoch's excess over the later ones (README) shows the cost.
    """

    def __init__(self) -> None:
        self.count: int | None = None
        self.seconds: float | None = None

    def __enter__(self) -> CompileMeter:
        global _listening
        if keras.backend.backend() == "jax":
            if not _listening:
                import jax

                jax.monitoring.register_event_duration_secs_listener(_on_jax_event)
                _listening = True
            self._start = dict(_compile_events)
        return self

    def __exit__(self, *exc: object) -> None:
        if keras.backend.backend() == "jax":
            self.count = int(_compile_events["count"] - self._start["count"])
            self.seconds = round(float(_compile_events["seconds"] - self._start["seconds"]), 3)


def fit(
    model: keras.Model,
    data: PreparedData,
    config: dict[str, Any],
    reporter: EpochReporter,
    *,
    initial_epoch: int = 0,
    verbose: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Train for ``config['epochs']`` epochs in all, starting after ``initial_epoch`` done ones."""
    result = FitResult(epochs_run=initial_epoch)
    epochs = int(config["epochs"])
    if initial_epoch >= epochs:
        return result
    inputs = fit_inputs(data, int(config["batch_size"]))
    try:
        with CompileMeter() as meter:
            model.fit(
                # bucketing (search.datasets.batching): batches by length, else padded arrays
                **inputs,
                epochs=epochs,
                initial_epoch=initial_epoch,
                verbose=verbose,
                callbacks=[*callbacks, _ReportingCallback(reporter, result)],
            )
        result.compilations, result.compile_seconds = meter.count, meter.seconds
        if result.compilations is None and model.jit_compile:
            result.compilations = step_shapes(data, int(config["batch_size"]))
    except TrialFailed:
        raise
    except (ValueError, MemoryError) as exc:
        raise TrialFailed(
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        ) from exc
    except Exception as exc:
        # TensorFlow's ResourceExhaustedError (out of memory) and friends: the trial failed.
        if type(exc).__module__.startswith("tensorflow"):
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise TrialFailed(f"{type(exc).__name__}: {first}") from exc
        raise
    return result
