"""One trial lifecycle for every engine: an engine decides, the runner runs.

An :class:`Engine` (``search/engines/``) only decides: which parameters the next trial trains,
for how many epochs, whether an epoch prunes it, what a finished trial means for the search. The
:class:`TrialRunner` does everything else, the same way for every engine:

* build the model (or restore the newest checkpoint of the trial's lineage, or load the weights a
  Hyperband warm start continues), fit it, and after every epoch checkpoint it, record the epoch
  and ask the engine whether to go on;
* record the trial's row (configuration, state, times, parameter count, data fingerprint);
* keep a heartbeat while a trial runs, and find trials whose process died (on this host by
  process id, elsewhere by the heartbeat): they are marked ``interrupted`` and handed to the
  engine, which decides how the lineage continues;
* drop the checkpoints of finished lineages, except the best ``keep_checkpoints``.

Crash rules (a kill -9 at any moment loses at most the epoch in flight): every epoch is
checkpointed before it is recorded; a trial that was cut is continued by a copy with the same
parameters in the same lineage, which restores the lineage's newest checkpoint, replays its
epochs into its own record (no gap, no repeated epoch) and trains on; interrupted trials do not
count toward the target, finished ones count exactly once.
"""

from __future__ import annotations

import math
import os
import platform
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from search import faults
from search.errors import SearchError, TrialFailed
from storage import FINISHED_STATES, StudyDatabase, TrialRecord, TrialState

if TYPE_CHECKING:
    from search.artefacts import CheckpointStore, Restored
    from search.data import DataSource, PreparedData
    from search.plan import StudyPlan

#: The search stops when this many trials in a row fail: something is wrong beyond one trial.
MAX_CONSECUTIVE_FAILURES = 5
#: Seconds between heartbeats of a running trial (Optuna's storage judges staleness).
HEARTBEAT_SECONDS = 10


class Observer(Protocol):
    """Progress events of a search (the CLI shows them with Rich; tests may record them)."""

    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None: ...
    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None: ...
    def epoch_done(
        self, number: int, epoch: int, epochs: int, metrics: dict[str, float]
    ) -> None: ...
    def trial_finished(
        self, number: int, state: str, value: float | None, finished: int
    ) -> None: ...
    def time_budget(self, budget_s: float | None, spent_s: float, workers: int) -> None:
        """The study's time budget and the training time it had used before this run."""

    def settings_changed(self, lines: Sequence[str]) -> None:
        """Stored settings of the study that this run replaces, one line each (plan.changed)."""

    def batch_done(self, number: int, batch: int, steps: int | None) -> None:
        """Progress within an epoch (called at most a few times a second)."""

    def workers_status(self, rows: list[Any], finished: int, trial_seconds: list[float]) -> None:
        """``--workers N``: what each worker process runs now (search.progress.WorkerRow), the
        study's finished trials and their durations."""

    def close(self) -> None: ...


class SilentObserver:
    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None:
        pass

    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None:
        pass

    def epoch_done(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        pass

    def trial_finished(self, number: int, state: str, value: float | None, finished: int) -> None:
        pass

    def time_budget(self, budget_s: float | None, spent_s: float, workers: int) -> None:
        pass

    def settings_changed(self, lines: Sequence[str]) -> None:
        pass

    def batch_done(self, number: int, batch: int, steps: int | None) -> None:
        pass

    def workers_status(self, rows: list[Any], finished: int, trial_seconds: list[float]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class TrialOrder:
    """What an engine decided for one trial; the runner carries it out."""

    number: int
    trial_id: int
    config: dict[str, Any]
    #: Train until this epoch (1-based, inclusive).
    epochs: int
    #: The first try's number: a trial and the copies that continue it share checkpoints.
    lineage: int
    #: The cut trial this one continues (a copy), if any.
    continues: int | None = None
    #: Hyperband's warm start: the lineage whose best weights this model starts from, the trial
    #: whose first ``initial_epoch`` epochs are recorded as this one's, and that epoch count.
    warm_start_lineage: int | None = None
    inherits_from: TrialRecord | None = None
    initial_epoch: int = 0
    #: Keep the lineage's best-epoch weights (a later warm start reads them).
    keep_best_weights: bool = False
    #: Engine-specific facts recorded with the trial (bracket, Keras Tuner's trial id, ...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    value: float | None
    best_epoch: int | None
    epochs_run: int
    reason: str | None = None
    #: Validation accuracy per epoch (1-based epochs at index epoch - 1; None: not measured).
    val_accuracy: tuple[float | None, ...] = ()
    #: What the trial can be judged on (search.objectives): val_accuracy, val_loss, params,
    #: model_mb, latency_ms, latency_single_ms; empty for a trial that did not train.
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CutTrial:
    """A trial whose process died or was stopped: its lineage must continue."""

    number: int
    trial_id: int
    params: dict[str, Any]
    lineage: int


class Engine(Protocol):
    """Decides; never builds, fits or writes rnnsearch's rows (the runner does)."""

    name: str
    #: Whether finished lineages' checkpoints may be dropped during the search (Hyperband's warm
    #: starts read earlier trials' weights until its schedule ends).
    drops_checkpoints_during_search: bool

    def next_trial(self) -> TrialOrder | None:
        """The next trial to run, or None when the search is over for this worker."""

    def epoch_done(self, order: TrialOrder, epoch: int, metrics: dict[str, float]) -> bool:
        """Take a finished (or replayed) epoch's metrics; True prunes the trial."""

    def trial_finished(self, order: TrialOrder, outcome: TrialOutcome) -> None:
        """Tell the engine how the trial ended (complete, pruned or failed)."""

    def trial_cut(self, cut: CutTrial, reason: str) -> None:
        """A trial was interrupted (its process died, or Ctrl-C): arrange its continuation."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("rnnsearch", "tensorflow", "keras", "optuna", "keras-tuner", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# -- ownership and recovery -------------------------------------------------------------------


def process_owner() -> dict[str, Any]:
    import psutil

    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_started": psutil.Process(pid).create_time(),
    }


def owner_is_dead(extra: dict[str, Any]) -> bool:
    """True only when the owner ran on this host and its process is gone (or was replaced)."""
    import psutil

    if extra.get("host") != socket.gethostname() or "pid" not in extra:
        return False
    try:
        proc = psutil.Process(int(extra["pid"]))
    except psutil.NoSuchProcess:
        return True
    if proc.status() == psutil.STATUS_ZOMBIE:
        return True
    return abs(proc.create_time() - float(extra.get("pid_started", 0))) > 1.0


def running_trials(db: StudyDatabase, study: str, *, live: bool) -> list[TrialRecord]:
    """The study's running trials whose owner is alive (``live=True``) or gone (``False``).

    Gone: on this host, its process no longer exists (kill -9); on any host, its heartbeat is
    older than the grace period (Optuna's rule, the check ``fail_stale_trials`` makes). A trial
    just created, before its owner and first heartbeat are written, counts as alive.
    """
    running = db.trials(study, [TrialState.RUNNING.value])
    if not running:
        return []
    stale = db.stale_running_trial_ids(study)
    return [t for t in running if (t.trial_id in stale or owner_is_dead(t.extra)) is not live]


def finished_count(db: StudyDatabase, study: str) -> int:
    counts = db.state_counts(study)
    return sum(counts.get(s, 0) for s in FINISHED_STATES)


@contextmanager
def heartbeat(db: StudyDatabase, trial_id: int) -> Iterator[None]:
    """Keep the trial's heartbeat fresh while it runs (so other hosts can tell it is alive)."""
    storage = db.optuna_storage
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed beat only makes the trial look stale
                pass

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name=f"rnnsearch-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_SECONDS)


class InterruptGuard:
    """First Ctrl-C: stop the trial cleanly (KeyboardInterrupt). Second: abort at once.

    In the command line (``hard_abort``) the second Ctrl-C ends the process (exit 130), wherever
    it lands: after the first one the guard stays installed past its ``with`` block, so a Ctrl-C
    during the clean-up or the summary cannot escape as a traceback (search.cli.main ends the
    process before the interpreter's shutdown). Anywhere else (the Python API in a notebook,
    whose kernel must survive) it raises KeyboardInterrupt again, out of the clean-up; a trial
    it leaves ``running`` is recovered by its stale heartbeat.
    """

    def __init__(self, hard_abort: bool = False) -> None:
        self.count = 0
        self.hard_abort = hard_abort
        self._previous: Any = None

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            if self.hard_abort:
                os.write(2, b"\nrnnsearch: aborted\n")
                os._exit(130)
            # Nothing after this one is caught here: the caller's own handler takes over.
            self.__exit__()
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.hard_abort and self.count:
            return
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


# -- the runner -----------------------------------------------------------------------------


#: Per-epoch metrics written as Optuna user attributes (lists, epoch 1 first).
CURVE_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def curve_attrs(history: list[dict[str, float]], seconds: list[float]) -> dict[str, Any]:
    """A trial's learning curves as Optuna user attributes: ``epoch_loss`` = [epoch 1, ...]."""
    out: dict[str, Any] = {}
    for key in CURVE_METRICS:
        if any(key in h for h in history):
            out[f"epoch_{key}"] = [round(h[key], 6) if key in h else None for h in history]
    out["epoch_seconds"] = [round(x, 3) for x in seconds]
    return out


#: Seconds between two reports of progress within an epoch (each costs a display update).
BATCH_REPORT_EVERY_S = 0.5


def batch_progress_callback(observer: Observer, number: int) -> Any:
    """A Keras callback telling the observer how far the running epoch is (long epochs)."""
    import keras

    class BatchProgress(keras.callbacks.Callback):
        # It reads no logs, so Keras may call it from its dispatch thread without waiting for
        # the step's results (a hook that is not async-safe makes Keras sync every batch).
        async_safe = True

        def __init__(self) -> None:
            super().__init__()
            self._last = 0.0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            if now - self._last >= BATCH_REPORT_EVERY_S:
                self._last = now
                steps = (self.params or {}).get("steps")
                observer.batch_done(number, batch + 1, int(steps) if steps else None)

    return BatchProgress()


def tensorboard_callback(root: str, study: str, number: int) -> Any:
    """Keras' TensorBoard callback writing to ``root/<study>/trial-<number>`` (one run folder a
    trial, so TensorBoard lists trials by study and number; characters other than letters,
    digits, '.', '_' and '-' in the study's name become '_')."""
    import keras

    # A study's name is no safe folder name (`..`, `a/b`): only letters, digits, '.', '_', '-'.
    folder = re.sub(r"[^A-Za-z0-9._-]", "_", study)
    if set(folder) <= {"."}:
        folder = folder.replace(".", "_")
    log_dir = os.path.join(root, folder, f"trial-{number:04d}")
    # No graph or histograms: a trial's scalars (loss, accuracy per epoch) are what is compared.
    return keras.callbacks.TensorBoard(
        log_dir=log_dir, write_graph=False, histogram_freq=0, update_freq="epoch"
    )


class _EpochReporter:
    """Per epoch: checkpoint, record, tell the engine; stop on prune, spent patience or a spent
    time budget."""

    def __init__(self, runner: TrialRunner, order: TrialOrder, prepared: PreparedData) -> None:
        self.runner = runner
        self.order = order
        self.prepared = prepared
        self.history: list[dict[str, float]] = []
        self.seconds: list[float] = []
        self.pruned = False
        self.stopped_early = False
        #: The study's --time-budget ran out during this trial: it ended after that epoch.
        self.stopped_by_budget = False
        self._best = -math.inf
        self._started = time.perf_counter()

    def epoch_done(self, model: Any, epoch: int, metrics: dict[str, float], seconds: float) -> bool:
        runner, order = self.runner, self.order
        self.history.append(metrics)
        self.seconds.append(seconds)
        runner.checkpoints.save(
            lineage=order.lineage,
            trial=order.number,
            model=model,
            epoch=epoch,
            history=self.history,
            seconds=self.seconds,
            config=order.config,
            data_fingerprint=self.prepared.fingerprint,
            keep_epoch=self._best_epoch(),
        )
        value = metrics.get("val_accuracy")
        if order.keep_best_weights and value is not None and value > self._best:
            runner.checkpoints.save_best_weights(order.lineage, model)
        if value is not None:
            self._best = max(self._best, value)
        faults.point("after-checkpoint")
        runner.record_epoch(order, epoch, metrics, seconds)
        runner.set_user_attrs(order, curve_attrs(self.history, self.seconds))
        faults.point("after-epoch")
        runner.observer.epoch_done(order.number, epoch, order.epochs, metrics)
        return self._judge(epoch, metrics)

    def replay(self, history: list[dict[str, float]], seconds: list[float]) -> bool:
        """Record restored epochs as this trial's; True if that prunes it (if they exhaust its
        patience instead, ``stopped_early`` is set and the trial ends)."""
        for i, metrics in enumerate(history, start=1):
            sec = seconds[i - 1] if i - 1 < len(seconds) else 0.0
            self.runner.record_epoch(self.order, i, metrics, sec)
            self.history.append(metrics)
            self.seconds.append(sec)
            if "val_accuracy" in metrics:
                self._best = max(self._best, metrics["val_accuracy"])
            if self._judge(i, metrics):
                break
        self.runner.set_user_attrs(self.order, curve_attrs(self.history, self.seconds))
        return self.pruned

    def _judge(self, epoch: int, metrics: dict[str, float]) -> bool:
        if "val_accuracy" not in metrics:
            return False
        prune = self.runner.engine.epoch_done(self.order, epoch, metrics)
        if epoch >= self.order.epochs:
            return False
        if prune:
            self.pruned = True
            return True
        patience = self.runner.plan.patience
        if patience and self._epochs_since_best() >= patience:
            self.stopped_early = True
            return True
        if self._budget_spent():
            self.stopped_by_budget = True
            return True
        return False

    def _budget_spent(self) -> bool:
        """The study's time budget is used up, counting this trial's time so far: a budget
        bounds the run to about one epoch past it, whatever trial is running when it ends."""
        budget = self.runner.plan.time_budget
        if not budget:
            return False
        done = self.runner.db.spent_seconds(self.runner.plan.study)
        return done + (time.perf_counter() - self._started) >= float(budget)

    def _best_epoch(self) -> int | None:
        """The first epoch with the best validation accuracy so far (the trial's value)."""
        values = [h.get("val_accuracy", float("-inf")) for h in self.history]
        return values.index(max(values)) + 1 if values else None

    def _epochs_since_best(self) -> int:
        values = [h.get("val_accuracy", float("-inf")) for h in self.history]
        return len(values) - (values.index(max(values)) + 1)


class TrialRunner:
    """Runs the trials an engine orders, until it orders none (see the module docstring)."""

    def __init__(
        self,
        db: StudyDatabase,
        plan: StudyPlan,
        study_id: int,
        source: DataSource,
        engine: Engine,
        checkpoints: CheckpointStore,
        observer: Observer,
    ) -> None:
        self.db = db
        self.plan = plan
        self.study_id = study_id
        self.source = source
        self.engine = engine
        self.checkpoints = checkpoints
        self.observer = observer
        self.owner = process_owner()
        self.versions = library_versions()

    # -- rows --------------------------------------------------------------------------------
    def record(self, order: TrialOrder, state: TrialState, **fields: Any) -> None:
        self.db.record_trial_info(
            trial_id=order.trial_id,
            study_id=self.study_id,
            number=order.number,
            engine=self.engine.name,
            config=order.config,
            status=state.value,
            **fields,
        )

    def record_epoch(
        self, order: TrialOrder, epoch: int, metrics: dict[str, float], seconds: float | None
    ) -> None:
        self.db.record_epoch(
            trial_id=order.trial_id,
            study_id=self.study_id,
            epoch=epoch,
            metrics=metrics,
            seconds=seconds,
        )

    def set_user_attrs(self, order: TrialOrder, attrs: dict[str, Any]) -> None:
        """Also as Optuna user attributes of the trial, so optuna-dashboard and ``optuna
        trials`` show them (one transaction)."""
        self.db.set_trial_user_attrs(order.trial_id, attrs)

    # -- recovery ----------------------------------------------------------------------------
    def recover(self) -> list[int]:
        """Mark trials whose worker died interrupted and hand them to the engine; their numbers."""
        import optuna

        storage = self.db.optuna_storage
        study = self.plan.study
        cut: list[TrialRecord] = []
        for t in running_trials(self.db, study, live=False):
            try:
                changed = storage.set_trial_state_values(
                    t.trial_id, state=optuna.trial.TrialState.FAIL
                )
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if changed:
                cut.append(t)
        for t in cut:
            self.cut(t, "its worker stopped mid-trial (killed or lost); its lineage continues")
        return [t.number for t in cut]

    def cut(self, t: TrialRecord, reason: str) -> None:
        self.db.record_trial_info(
            trial_id=t.trial_id,
            study_id=self.study_id,
            number=t.number,
            engine=self.engine.name,
            config=t.config,
            status=TrialState.INTERRUPTED.value,
            reason=reason,
        )
        lineage = int(t.extra.get("lineage", t.number))
        self.engine.trial_cut(CutTrial(t.number, t.trial_id, dict(t.params), lineage), reason)

    # -- one trial -----------------------------------------------------------------------------
    def run(self, order: TrialOrder) -> TrialOutcome:
        import keras

        from search.model import build_model
        from search.train import fit

        extra: dict[str, Any] = {**self.owner, **order.extra, "lineage": order.lineage}
        if order.continues is not None:
            extra["resumed_from_trial"] = order.continues
        self.record(order, TrialState.RUNNING, versions=self.versions, extra=extra)
        faults.point("trial-started")
        self.observer.trial_started(order.number, order.config, order.epochs)
        started = time.perf_counter()
        # Without this, every trial's graphs and weights stay in Keras' global state.
        # free_memory=True runs the one garbage collection a trial needs.
        keras.backend.clear_session(free_memory=True)
        keras.utils.set_random_seed((self.plan.seed + order.number) % (2**32 - 1))
        prepared = self.source.prepare(order.config)
        reporter = _EpochReporter(self, order, prepared)
        fit_seconds = 0.0
        compiled: dict[str, Any] = {}
        try:
            with heartbeat(self.db, order.trial_id):
                model, initial_epoch = self._model(order, prepared, reporter, build_model)
                param_count = int(model.count_params())
                self.record(
                    order,
                    TrialState.RUNNING,
                    data_fingerprint=prepared.fingerprint,
                    param_count=param_count,
                )
                self.set_user_attrs(order, {"param_count": param_count})
                if not (reporter.pruned or reporter.stopped_early or reporter.stopped_by_budget):
                    callbacks = [batch_progress_callback(self.observer, order.number)]
                    if self.plan.tensorboard_dir:
                        callbacks.append(
                            tensorboard_callback(
                                self.plan.tensorboard_dir, self.plan.study, order.number
                            )
                        )
                    fit_started = time.perf_counter()
                    result = fit(
                        model,
                        prepared,
                        order.config,
                        reporter,
                        initial_epoch=initial_epoch,
                        callbacks=callbacks,
                    )
                    # Time inside Keras' fit (epochs, its own set-up and tear-down): overhead.
                    fit_seconds = round(time.perf_counter() - fit_started, 3)
                    compiled = {
                        "backend": keras.backend.backend(),
                        "jit_compile": bool(model.jit_compile),
                        "compilations": result.compilations,
                        "compile_seconds": result.compile_seconds,
                        "compilations_cached": result.compilations_cached,
                        "recomputed_steps": result.recomputed_steps,
                    }
                figures = self._measure(model, prepared, reporter)
        except TrialFailed as exc:
            return self._finish(order, started, TrialState.FAILED, reporter, reason=str(exc))
        except KeyboardInterrupt:
            self.record(
                order,
                TrialState.INTERRUPTED,
                reason="interrupted by the user (Ctrl-C); its checkpoint is kept",
                wall_seconds=time.perf_counter() - started,
            )
            self.engine.trial_cut(
                CutTrial(order.number, order.trial_id, {}, order.lineage),
                "interrupted by the user (Ctrl-C)",
            )
            raise
        values = [h["val_accuracy"] for h in reporter.history if "val_accuracy" in h]
        if not values:
            return self._finish(
                order,
                started,
                TrialState.FAILED,
                reporter,
                reason="training reported no val_accuracy",
            )
        extra_done: dict[str, Any] = {"fit_seconds": fit_seconds, **compiled}
        if reporter.pruned:
            return self._finish(
                order,
                started,
                TrialState.PRUNED,
                reporter,
                reason=f"pruned by the median rule after epoch {len(reporter.history)}",
                extra=extra_done,
                figures=figures,
            )
        if reporter.stopped_early:
            extra_done["stopped_early_at"] = len(reporter.history)
        if reporter.stopped_by_budget:
            extra_done["stopped_by_budget_at"] = len(reporter.history)
        return self._finish(
            order, started, TrialState.COMPLETE, reporter, extra=extra_done, figures=figures
        )

    def _measure(
        self, model: Any, prepared: PreparedData, reporter: _EpochReporter
    ) -> dict[str, float]:
        """The trial's figures (search.objectives): its best validation metrics and what its
        model costs (parameters, saved size, latency; search.measure). Empty if it never
        reported a validation accuracy (it fails)."""
        from search.measure import measure_model

        accuracies = [h["val_accuracy"] for h in reporter.history if "val_accuracy" in h]
        if not accuracies:
            return {}
        losses = [h["val_loss"] for h in reporter.history if "val_loss" in h]
        started = time.perf_counter()
        try:
            cost = measure_model(model, prepared.x_val)
        except (ValueError, OSError) as exc:
            raise TrialFailed(f"cannot measure the trained model: {exc}") from exc
        figures: dict[str, float] = {
            "val_accuracy": max(accuracies),
            **({"val_loss": min(losses)} if losses else {}),
            **cost.to_dict(),
            "measure_seconds": round(time.perf_counter() - started, 3),
        }
        return figures

    def _model(
        self,
        order: TrialOrder,
        prepared: PreparedData,
        reporter: _EpochReporter,
        build_model: Callable[..., Any],
    ) -> tuple[Any, int]:
        """The model to train and the epochs it has done: restored, warm-started or new."""
        from search.model import set_jit_compile, wants_jit

        jit = wants_jit(self.plan.jit_compile)
        restored: Restored | None = None
        if order.continues is not None:
            restored = self.checkpoints.load(order.lineage, order.config, prepared.fingerprint)
        if restored is not None:
            self.record(
                order,
                TrialState.RUNNING,
                extra={
                    "resumed_at_epoch": restored.epoch,
                    "restored_from_trial": restored.written_by,
                },
            )
            reporter.replay(restored.history, restored.seconds)
            set_jit_compile(restored.model, jit)
            return restored.model, restored.epoch
        try:
            model = build_model(order.config, prepared.spec, jit_compile=jit)
        except (ValueError, TypeError) as exc:
            raise TrialFailed(f"cannot build the model: {exc}") from exc
        if order.warm_start_lineage is not None:
            weights = self.checkpoints.best_weights(order.warm_start_lineage)
            if weights is not None:
                model.load_weights(weights)
                if order.inherits_from is not None:
                    for rec in self.db.epochs(order.inherits_from.trial_id)[: order.initial_epoch]:
                        metrics = {
                            k: getattr(rec, k)
                            for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                            if getattr(rec, k) is not None
                        }
                        self.record_epoch(order, rec.epoch, metrics, rec.seconds)
                        reporter.history.append(metrics)
                        reporter.seconds.append(rec.seconds or 0.0)
                        if "val_accuracy" in metrics:
                            self.engine.epoch_done(order, rec.epoch, metrics)
                return model, order.initial_epoch
        return model, 0

    def _finish(
        self,
        order: TrialOrder,
        started: float,
        state: TrialState,
        reporter: _EpochReporter,
        *,
        reason: str | None = None,
        extra: dict[str, Any] | None = None,
        figures: dict[str, float] | None = None,
    ) -> TrialOutcome:
        figures = dict(figures or {}) if state is not TrialState.FAILED else {}
        measure_seconds = figures.pop("measure_seconds", None)
        values = [h.get("val_accuracy") for h in reporter.history]
        scored = [v for v in values if v is not None]
        best_epoch = values.index(max(scored)) + 1 if scored else None
        outcome = TrialOutcome(
            state=state,
            value=max(scored) if scored and state is not TrialState.FAILED else None,
            best_epoch=best_epoch,
            epochs_run=len(reporter.history),
            reason=reason,
            val_accuracy=tuple(values),
            figures=figures,
        )
        if measure_seconds is not None:
            extra = {**(extra or {}), "measure_seconds": measure_seconds}
        wall_seconds = time.perf_counter() - started
        self.record(
            order,
            state,
            reason=reason,
            wall_seconds=wall_seconds,
            extra={"best_epoch": best_epoch, **(extra or {})},
            figures={k: v for k, v in figures.items() if k != "params"},
        )
        attrs: dict[str, Any] = {"wall_seconds": round(wall_seconds, 3), "best_epoch": best_epoch}
        if reason:
            attrs["reason"] = reason
        # The figures too, for Optuna's own tools (optuna-dashboard, trials_dataframe).
        attrs.update(figures)
        self.set_user_attrs(order, attrs)
        return outcome

    # -- the loop ------------------------------------------------------------------------------
    def run_all(
        self, before_trial: Callable[[], bool] | None = None, *, hard_abort: bool = False
    ) -> int:
        """Run the engine's trials until it orders none; return how many ran (``hard_abort``:
        a second Ctrl-C ends the process, see :class:`InterruptGuard`)."""
        from search import compile_cache

        compile_cache.enable()  # before the first trial compiles anything
        ran = 0
        failures_in_a_row = 0
        with InterruptGuard(hard_abort):
            while True:
                if before_trial is not None and not before_trial():
                    break
                order = self.engine.next_trial()
                if order is None:
                    break
                outcome = self.run(order)
                self.engine.trial_finished(order, outcome)
                faults.point("trial-finished")
                ran += 1
                if self.engine.drops_checkpoints_during_search:
                    self.drop_checkpoints()
                self.observer.trial_finished(
                    order.number,
                    outcome.state.value,
                    outcome.value,
                    finished_count(self.db, self.plan.study),
                )
                faults.point("between-trials")
                failures_in_a_row = (
                    failures_in_a_row + 1 if outcome.state is TrialState.FAILED else 0
                )
                if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                    raise SearchError(
                        f"stopping: the last {failures_in_a_row} trials of {self.plan.study!r} "
                        f"failed; last reason: {outcome.reason}"
                    )
        return ran

    def drop_checkpoints(self) -> None:
        """Drop the checkpoints of finished lineages, except the best ``keep_checkpoints``.

        A lineage is finished once one of its trials finished (copies only follow cuts).
        """
        trials = self.db.trials(self.plan.study)
        keep = self.plan.keep_checkpoints
        best = self.db.best(self.plan.study, top=keep) if keep > 0 else []
        kept = {int(t.extra.get("lineage", t.number)) for t in best}
        done = {int(t.extra.get("lineage", t.number)) for t in trials if t.state in FINISHED_STATES}
        drop = [n for n in self.checkpoints.lineages() if n in done and n not in kept]
        self.checkpoints.remove(drop)
