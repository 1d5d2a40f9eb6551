"""Train a built model on prepared data, reporting every finished epoch.

:func:`fit` is a pure function of (model, data, config, reporter): it knows nothing of engines or
storage. The reporter decides what an epoch means (store it, prune the trial, checkpoint).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
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
    #: Of those compilations, how many were loaded from the compilation cache on disk instead
    #: (:mod:`search.compile_cache`; None where the backend does not report it).
    compilations_cached: int | None = None
    #: Whether the recurrent steps were recomputed in the backward pass
    #: (:func:`recomputed_recurrent_steps`).
    recomputed_steps: bool = False

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


_compile_events = {"count": 0, "seconds": 0.0, "cached": 0}
_listening = False
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def _on_jax_duration(event: str, duration: float, **_: Any) -> None:
    from jax._src.dispatch import BACKEND_COMPILE_EVENT

    if event == BACKEND_COMPILE_EVENT:
        _compile_events["count"] += 1
        _compile_events["seconds"] += float(duration)


def _on_jax_event(event: str, **_: Any) -> None:
    if event == _CACHE_HIT_EVENT:
        _compile_events["cached"] += 1


class CompileMeter:
    """Counts the compilations (and their seconds) that happen while a block runs.

    JAX reports each backend compilation (``jax.monitoring``), so the count and the seconds are
    exact; a step loaded from the compilation cache on disk (:mod:`search.compile_cache`)
    counts as a compilation, with the seconds its loading took, and in ``cached``. TensorFlow's
    XLA does not report them: there the count is the number of distinct batch shapes the block
    trained and validated on (each compiles once) and the seconds stay None; the first epoch's
    excess over the later ones (README) shows the cost.
    """

    def __init__(self) -> None:
        self.count: int | None = None
        self.seconds: float | None = None
        self.cached: int | None = None

    def __enter__(self) -> CompileMeter:
        global _listening
        if keras.backend.backend() == "jax":
            if not _listening:
                import jax

                jax.monitoring.register_event_duration_secs_listener(_on_jax_duration)
                jax.monitoring.register_event_listener(_on_jax_event)
                _listening = True
            self._start = dict(_compile_events)
        return self

    def __exit__(self, *exc: object) -> None:
        if keras.backend.backend() == "jax":
            self.count = int(_compile_events["count"] - self._start["count"])
            self.seconds = round(float(_compile_events["seconds"] - self._start["seconds"]), 3)
            self.cached = int(_compile_events["cached"] - self._start["cached"])


#: Set to 0 to store every recurrent step's activations for the backward pass, as Keras does,
#: instead of recomputing them (the benchmarks' "before" arm; a way out should a Keras release
#: break the recomputation).
RECOMPUTE_ENV = "RNNSEARCH_RECOMPUTE_STEPS"
#: Recompute only where a batch's sequence holds at least this many state elements (steps x
#: batch x state size: LSTM-64 at 100 steps of 64 rows holds 819,200); below, storing is as fast
#: or faster (GRU-32 at 100 steps: 1.1x slower recomputed; bench/compiled_steps.py).
RECOMPUTE_MIN_ELEMENTS = 2**19
_recompute_lock = threading.Lock()
_recompute_users = 0


def _keras_jax_loops() -> tuple[Any, Any, Any] | None:
    """Keras' backend namespace, the JAX loop its recurrent layers call (``backend.rnn``) and
    its GRU loop (``backend.gru``), where this Keras has them in the expected form and JAX
    computes on a CPU; else None."""
    if keras.backend.backend() != "jax" or os.environ.get(RECOMPUTE_ENV, "1") == "0":
        return None
    try:
        import jax

        namespace = importlib.import_module("keras.src.backend")
        loops = importlib.import_module("keras.src.backend.jax.rnn")
    except ImportError:
        return None
    rnn, gru = getattr(loops, "rnn", None), getattr(loops, "gru", None)
    if (
        jax.default_backend() != "cpu"
        or rnn is None
        or getattr(namespace, "rnn", None) is not rnn
        or getattr(namespace, "gru", None) is not gru
    ):
        return None
    return namespace, rnn, gru


def _recomputing_pays(inputs: Any, states: Any, time_major: bool) -> bool:
    """Whether a sequence this long with these states is large enough to recompute its steps
    (:data:`RECOMPUTE_MIN_ELEMENTS`); shapes are static where JAX traces, so this is decided
    once per compiled batch width."""
    first = keras.tree.flatten(inputs)[0]
    steps = first.shape[0 if time_major else 1]
    held = sum(math.prod(s.shape) for s in keras.tree.flatten(states))
    return steps is not None and steps * held >= RECOMPUTE_MIN_ELEMENTS


@contextlib.contextmanager
def recomputed_recurrent_steps() -> Iterator[bool]:
    """While the block runs, Keras' recurrent layers (SimpleRNN, LSTM, GRU, the Jordan cell,
    either direction) recompute each time step in the backward pass (``jax.checkpoint`` around
    the step) instead of storing its activations, for batch widths where that pays
    (:data:`RECOMPUTE_MIN_ELEMENTS`); yields whether the hooks are in place.

    Why: on a CPU the stored activations of a long sequence (steps x batch x gates) overflow
    the caches, and reading them back costs more than computing them again. Measured with
    ``bench/compiled_steps.py`` (docs/speed.md): LSTM-64 at maxlen 500 and a bidirectional
    GRU-64 at maxlen 400 train in about 0.7 of the time. The gradients are the same computation
    (the tests check that the trained weights match). For those widths Keras' own GRU loop under
    JAX (input projections of all steps at once, not recomputed) is set aside for the common
    loop, which recomputes. Only under JAX on a CPU: TensorFlow, and LSTM's cuDNN path on a GPU,
    are untouched. The hooks are ``keras.src.backend.rnn`` and ``.gru``, looked up by the layers
    at call time; where a Keras release lays them out otherwise nothing is changed.
    """
    global _recompute_users
    found = _keras_jax_loops()
    if found is None:
        yield False
        return
    namespace, loop, gru = found
    import jax

    @functools.wraps(loop)
    def recomputing_loop(
        step_function: Any, inputs: Any, initial_states: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if _recomputing_pays(inputs, initial_states, bool(kwargs.get("time_major"))):
            step_function = jax.checkpoint(step_function)
        return loop(step_function, inputs, initial_states, *args, **kwargs)

    @functools.wraps(gru)
    def gru_loop(inputs: Any, initial_state: Any, *args: Any, **kwargs: Any) -> Any:
        if _recomputing_pays(inputs, initial_state, False):
            # Keras' GRU then runs its cell in the common loop (as with a mask), recomputed
            raise NotImplementedError
        return gru(inputs, initial_state, *args, **kwargs)

    with _recompute_lock:
        if _recompute_users == 0:
            namespace.rnn, namespace.gru = recomputing_loop, gru_loop
        _recompute_users += 1
    try:
        yield True
    finally:
        with _recompute_lock:
            _recompute_users -= 1
            if _recompute_users == 0:
                namespace.rnn, namespace.gru = loop, gru


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
        with CompileMeter() as meter, recomputed_recurrent_steps() as recomputed:
            result.recomputed_steps = recomputed
            model.fit(
                # bucketing (search.datasets.batching): batches by length, else padded arrays
                **inputs,
                epochs=epochs,
                initial_epoch=initial_epoch,
                verbose=verbose,
                callbacks=[*callbacks, _ReportingCallback(reporter, result)],
            )
        result.compilations, result.compile_seconds = meter.count, meter.seconds
        result.compilations_cached = meter.cached
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
