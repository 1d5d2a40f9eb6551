"""The Optuna worker: runs trials of a study until it holds its target, surviving crashes.

Crash rules (a kill -9 at any moment loses at most the epoch in flight):

* Every epoch is checkpointed (weights, optimiser state, metrics) before it is recorded.
* A trial whose process died is found at the next start: on this host by its process id, on
  any host by Optuna's heartbeat going stale. It is marked ``interrupted`` (Optuna: FAIL), and
  a copy with the same parameters is queued (Optuna: WAITING) carrying the cut trial's number.
* The copy restores the cut trial's last checkpoint, replays its epochs into its own record
  (so its learning curve has no gap and no repeated epoch) and trains on from there.
* Interrupted trials do not count toward the study's target; finished ones (complete, pruned,
  failed) count exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search import faults
from search.checkpoints import CheckpointStore, default_root
from search.errors import SearchError, TrialFailed
from storage import StudyConfig, StudyDatabase

RESUME_ATTR = "rnnsearch_resume_of"
FINISHED_STATES = ("complete", "pruned", "failed")
MAX_CONSECUTIVE_FAILURES = 5
#: Completed trials whose final checkpoint is kept for `retrain` (the best ones).
DEFAULT_KEEP_CHECKPOINTS = 3


def _owner() -> dict[str, Any]:
    import psutil

    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_started": psutil.Process(pid).create_time(),
    }


def _owner_is_dead(extra: dict[str, Any]) -> bool:
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


def finished_count(db: StudyDatabase, study: str) -> int:
    counts = db.state_counts(study)
    return sum(counts.get(s, 0) for s in FINISHED_STATES)


class _InterruptGuard:
    """First Ctrl-C: stop the trial cleanly (KeyboardInterrupt). Second: abort at once."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    def __enter__(self) -> _InterruptGuard:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            os.write(2, b"\nrnnsearch: aborted\n")
            os._exit(130)
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class _Reporter:
    """Per epoch: checkpoint, store the metrics, tell Optuna, stop when Optuna prunes."""

    db: StudyDatabase
    trial: Any
    trial_id: int
    study_id: int
    epochs: int
    observer: Any
    checkpoints: CheckpointStore
    history: list[dict[str, float]]
    seconds: list[float]
    pruned: bool = False
    #: Early stopping: epochs without a better validation accuracy before the trial ends.
    patience: int | None = None
    stopped_early: bool = False

    def epoch_done(self, model: Any, epoch: int, metrics: dict[str, float], seconds: float) -> bool:
        self.history.append(metrics)
        self.seconds.append(seconds)
        self.checkpoints.save(self.trial.number, model, epoch, self.history, self.seconds)
        faults.point("after-checkpoint")
        self.db.record_epoch(
            trial_id=self.trial_id,
            study_id=self.study_id,
            epoch=epoch,
            metrics=metrics,
            seconds=seconds,
        )
        faults.point("after-epoch")
        self.observer.epoch_done(self.trial.number, epoch, self.epochs, metrics)
        return self._report(epoch, metrics)

    def _report(self, epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics.get("val_accuracy")
        if value is None:
            return False
        self.trial.report(value, epoch)
        if epoch < self.epochs and self.trial.should_prune():
            self.pruned = True
            return True
        if self.patience and epoch < self.epochs and self._epochs_since_best() >= self.patience:
            self.stopped_early = True
            return True
        return False

    def _epochs_since_best(self) -> int:
        values = [h.get("val_accuracy", float("-inf")) for h in self.history]
        return len(values) - (values.index(max(values)) + 1)

    def replay(self, history: list[dict[str, float]], seconds: list[float]) -> bool:
        """Record a restored checkpoint's epochs as this trial's; True if that prunes it (if
        they exhaust its patience instead, ``stopped_early`` is set and the trial ends)."""
        for i, metrics in enumerate(history, start=1):
            sec = seconds[i - 1] if i - 1 < len(seconds) else None
            self.db.record_epoch(
                trial_id=self.trial_id,
                study_id=self.study_id,
                epoch=i,
                metrics=metrics,
                seconds=sec,
            )
            self.history.append(metrics)
            self.seconds.append(sec if sec is not None else 0.0)
            if self._report(i, metrics):
                break
        return self.pruned


def recover_dead_trials(
    db: StudyDatabase, study: Any, study_id: int, on_interrupted: Any
) -> list[int]:
    """Fail RUNNING trials whose worker is gone (same host: dead pid; any host: stale heartbeat)."""
    import optuna

    storage = db.optuna_storage
    recovered: list[int] = []
    infos = {t.trial_id: t for t in db.trials(study.study_name, ["running"])}
    for trial_id, rec in infos.items():
        if not _owner_is_dead(rec.extra):
            continue
        try:
            changed = storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if changed:
            on_interrupted(study, storage.get_trial(trial_id))
            recovered.append(rec.number)
    # Trials of other hosts, or with no owner recorded: Optuna's heartbeat rule.
    optuna.storages.fail_stale_trials(study)
    return recovered


def record_study(
    db: StudyDatabase,
    study: Any,
    study_id: int,
    plan: Any,
    source: Any,
    options: dict[str, Any],
    target: int | None,
) -> None:
    """Store what the study runs with (both engines); a new study also gets Optuna user attrs."""
    db.save_study_config(
        StudyConfig(
            name=study.study_name,
            study_id=study_id,
            engine=plan.engine,
            space_name=plan.space.name,
            space_json=plan.space.to_json(),
            data=source.description,
            seed=plan.seed,
            target_trials=target,
            options=options,
            created_at=plan.config.created_at if plan.config else None,
        )
    )
    if not plan.existing:
        study.set_user_attr("rnnsearch_engine", plan.engine)
        study.set_user_attr("rnnsearch_space", plan.space.name)
        study.set_user_attr("rnnsearch_seed", plan.seed)
        study.set_user_attr("rnnsearch_data", source.description["source"])


def run_optuna(db: StudyDatabase, req: Any, plan: Any, source: Any, observer: Any) -> int:
    """Run the Optuna engine until the study holds ``plan.target`` finished trials."""
    from search import tfenv

    tfenv.quiet_import()
    import keras
    import optuna

    from search.engines import optuna_engine
    from search.model import build_model
    from search.service import library_versions
    from search.train import fit

    # Optuna logs every failed or interrupted trial with a traceback; rnnsearch reports trials
    # itself (progress, `trials --state failed` with the reason).
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = db.optuna_storage
    existing_trials = len(db.trials(req.study)) if plan.existing else 0
    # Offsetting the seed by the trials already run keeps a resumed sampler from replaying the
    # first run's random start-up samples; an uninterrupted run stays reproducible.
    sampler = optuna_engine.make_sampler(
        plan.seed + existing_trials, n_startup_trials=min(10, max(3, plan.target // 4))
    )
    study = optuna.create_study(
        study_name=req.study,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=optuna_engine.make_pruner(),
        load_if_exists=True,
    )
    study_id = db.study_id(req.study)
    options = dict(plan.config.options) if plan.config else {}
    ckpt_root = options.get("checkpoint_dir") or str(default_root(db.url, req.study))
    keep = int(
        getattr(req, "keep_checkpoints", None)
        or options.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS)
    )
    time_budget = getattr(req, "time_budget", None) or options.get("time_budget_s")
    options.update(
        {
            "max_epochs": plan.max_epochs,
            "patience": plan.patience,
            "sampler": "TPESampler(multivariate, group)",
            "pruner": "MedianPruner(n_startup_trials=3, n_warmup_steps=1)",
            "checkpoint_dir": ckpt_root,
            "keep_checkpoints": keep,
            "time_budget_s": time_budget,
        }
    )
    record_study(db, study, study_id, plan, source, options, plan.target)
    if not plan.existing:
        # The space's known-good configurations run first and seed TPE's model.
        for point in plan.space.start_points():
            study.enqueue_trial(point, user_attrs={"rnnsearch_start_point": True})
    checkpoints = CheckpointStore(Path(ckpt_root))
    versions = library_versions()
    owner = _owner()

    def on_interrupted(study_: Any, frozen: Any, reason: str | None = None) -> None:
        """Mark a cut trial interrupted and queue a copy that continues from its checkpoint."""
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        rec = next((t for t in db.trials(req.study) if t.trial_id == trial_id), None)
        db.record_trial_info(
            trial_id=trial_id,
            study_id=study_id,
            number=frozen.number,
            engine=plan.engine,
            config=rec.config if rec else dict(frozen.params),
            status="interrupted",
            reason=reason or "its worker stopped mid-trial (killed or lost); queued again",
        )
        db.release_trial_slot(study_id)
        origin = frozen.user_attrs.get(RESUME_ATTR)
        study_.enqueue_trial(
            dict(frozen.params),
            user_attrs={
                RESUME_ATTR: frozen.number,
                "rnnsearch_first_try": origin if origin is not None else frozen.number,
            },
            skip_if_exists=False,
        )

    storage.heartbeat_stale_trial_callback = on_interrupted
    recovered = recover_dead_trials(db, study, study_id, on_interrupted)

    def objective(trial: optuna.Trial) -> float:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        resume_of = trial.user_attrs.get(RESUME_ATTR)
        sampled = optuna_engine.suggest(trial, plan.space)
        cfg = plan.space.resolve(sampled, max_epochs=plan.max_epochs)
        extra: dict[str, Any] = dict(owner)
        if resume_of is not None:
            extra["resumed_from_trial"] = int(resume_of)
        db.record_trial_info(
            trial_id=trial_id,
            study_id=study_id,
            number=trial.number,
            engine=plan.engine,
            config=cfg,
            status="running",
            versions=versions,
            extra=extra,
        )
        faults.point("trial-started")
        observer.trial_started(trial.number, cfg, int(cfg["epochs"]))
        started = time.perf_counter()
        # Without this, every trial's graphs and weights stay in Keras' global state.
        # free_memory=True runs the one garbage collection a trial needs.
        keras.backend.clear_session(free_memory=True)
        keras.utils.set_random_seed((plan.seed + trial.number) % (2**32 - 1))
        reporter = _Reporter(
            db,
            trial,
            trial_id,
            study_id,
            int(cfg["epochs"]),
            observer,
            checkpoints,
            [],
            [],
            patience=plan.patience,
        )
        initial_epoch = 0
        try:
            prepared = source.prepare(cfg)
            restored = checkpoints.load(int(resume_of)) if resume_of is not None else None
            if restored is not None:
                model = restored.model
                initial_epoch = restored.epoch
                db.record_trial_info(
                    trial_id=trial_id,
                    study_id=study_id,
                    number=trial.number,
                    engine=plan.engine,
                    config=cfg,
                    status="running",
                    extra={"resumed_at_epoch": initial_epoch},
                )
                # Continue in this trial's own checkpoint folder from the restored epoch.
                checkpoints.save(
                    trial.number, model, initial_epoch, restored.history, restored.seconds
                )
                if reporter.replay(restored.history, restored.seconds):
                    raise optuna.TrialPruned(f"pruned after restored epoch {initial_epoch}")
            else:
                try:
                    model = build_model(cfg, prepared.spec)
                except (ValueError, TypeError) as exc:
                    raise TrialFailed(f"cannot build the model: {exc}") from exc
            db.record_trial_info(
                trial_id=trial_id,
                study_id=study_id,
                number=trial.number,
                engine=plan.engine,
                config=cfg,
                status="running",
                data_fingerprint=prepared.fingerprint,
                param_count=int(model.count_params()),
            )
            fit_started = time.perf_counter()
            if not reporter.stopped_early:  # a restored trial may have run out of patience
                fit(model, prepared, cfg, reporter, initial_epoch=initial_epoch)
            # Time inside Keras' fit (epochs plus its own set-up and tear-down), for overhead.
            fit_seconds = round(time.perf_counter() - fit_started, 3)
        except TrialFailed as exc:
            _finish(
                db,
                trial_id,
                study_id,
                trial.number,
                plan.engine,
                cfg,
                "failed",
                started,
                reason=str(exc),
            )
            raise
        except optuna.TrialPruned:
            _finish(db, trial_id, study_id, trial.number, plan.engine, cfg, "pruned", started)
            raise
        except KeyboardInterrupt:
            db.record_trial_info(
                trial_id=trial_id,
                study_id=study_id,
                number=trial.number,
                engine=plan.engine,
                config=cfg,
                status="interrupted",
                reason="interrupted by the user (Ctrl-C); its checkpoint is kept",
                wall_seconds=time.perf_counter() - started,
            )
            db.release_trial_slot(study_id)
            frozen = storage.get_trial(trial_id)
            study.enqueue_trial(
                dict(frozen.params),
                user_attrs={
                    RESUME_ATTR: trial.number,
                    "rnnsearch_first_try": trial.user_attrs.get(
                        "rnnsearch_first_try", trial.number
                    ),
                },
                skip_if_exists=False,
            )
            raise
        values = [h["val_accuracy"] for h in reporter.history if "val_accuracy" in h]
        best_epoch = values.index(max(values)) + 1 if values else None
        if reporter.pruned:
            _finish(
                db,
                trial_id,
                study_id,
                trial.number,
                plan.engine,
                cfg,
                "pruned",
                started,
                reason=f"pruned by the median rule after epoch {len(reporter.history)}",
                extra={"best_epoch": best_epoch, "fit_seconds": fit_seconds},
            )
            raise optuna.TrialPruned(f"pruned after epoch {len(reporter.history)}")
        if not values:
            raise TrialFailed("training reported no val_accuracy")
        _finish(
            db,
            trial_id,
            study_id,
            trial.number,
            plan.engine,
            cfg,
            "complete",
            started,
            extra={
                "best_epoch": best_epoch,
                "fit_seconds": fit_seconds,
                **({"stopped_early_at": len(reporter.history)} if reporter.stopped_early else {}),
            },
        )
        return max(values)

    def after_trial(study_: Any, frozen: Any) -> None:
        faults.point("trial-finished")
        _prune_checkpoints(db, req.study, checkpoints, keep)

    if not getattr(req, "join_only", False):
        # The slots in use are the finished trials plus those running now (dead ones were just
        # recovered); other workers joining later share this count.
        running = len(db.trials(req.study, ["running"]))
        db.set_claimed(study_id, finished_count(db, req.study) + running)
    observer.study_ready(
        req.study, finished_count(db, req.study), plan.target, plan.existing or bool(recovered)
    )
    workers = int(getattr(req, "workers", None) or 1)
    if workers > 1:
        return spawn_workers(db, req.study, study_id, workers, observer)
    with tfenv.startup_objects_frozen():
        return run_loop(
            db,
            study,
            study_id,
            objective,
            observer=observer,
            time_budget=time_budget,
            callbacks=[after_trial],
            # Another local worker killed mid-trial is noticed before this one's next trial.
            before_trial=lambda: recover_dead_trials(db, study, study_id, on_interrupted),
        )


def threads_per_worker(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def worker_environment(threads: int) -> dict[str, str]:
    """TensorFlow and OpenMP thread pools sized so that N workers share the cores."""
    return {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
        "OMP_NUM_THREADS": str(threads),
    }


def spawn_workers(db: StudyDatabase, study: str, study_id: int, workers: int, observer: Any) -> int:
    """Run ``workers`` `rnnsearch worker` processes on the study and wait for them.

    Each is a fresh process (its own TensorFlow runtime and thread pools); Ctrl-C is passed on.
    """
    import subprocess
    import sys

    threads = threads_per_worker(workers)
    env = {**os.environ, **worker_environment(threads)}
    before = len(db.trials(study))
    cmd = [sys.executable, "-m", "search", "worker", study, "--storage", db.url, "--quiet"]
    # Their summaries would mix into this process's output; errors still reach stderr.
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    seen = finished_count(db, study)
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            now = finished_count(db, study)
            if observer is not None and now != seen:
                observer.trial_finished(-1, "complete", None, now)
                seen = now
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    failed = [p.returncode for p in procs if p.returncode != 0]
    if failed:
        raise SearchError(
            f"{len(failed)} of {workers} workers of {study!r} exited with an error "
            f"(exit codes {failed}); see their messages above"
        )
    return len(db.trials(study)) - before


def run_loop(
    db: StudyDatabase,
    study: Any,
    study_id: int,
    objective: Any,
    *,
    observer: Any = None,
    time_budget: float | None = None,
    callbacks: list[Any] | None = None,
    before_trial: Any = None,
) -> int:
    """Run trials one at a time while the study has unclaimed slots; return how many ran.

    Each trial first claims a slot (storage: one atomic UPDATE), so any number of workers on
    one study, on one machine or many, stop at exactly the target.
    """
    ran = 0
    failures_in_a_row = 0
    name = study.study_name
    with _InterruptGuard():
        while True:
            if time_budget and _spent_seconds(db, name) >= float(time_budget):
                break
            if before_trial is not None:
                before_trial()
            if not db.claim_trial_slot(study_id):
                break
            mine: list[Any] = []
            study.optimize(
                objective,
                n_trials=1,
                catch=(TrialFailed,),
                gc_after_trial=False,  # clear_session(free_memory=True) collects
                callbacks=[*(callbacks or []), lambda _s, frozen, mine=mine: mine.append(frozen)],
            )
            ran += 1
            faults.point("between-trials")
            if not mine:
                continue
            last = mine[-1]
            state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(
                last.state.name, last.state.name.lower()
            )
            if observer is not None:
                observer.trial_finished(last.number, state, last.value, finished_count(db, name))
            failures_in_a_row = failures_in_a_row + 1 if state == "failed" else 0
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                reason = db.trials(name)[-1].reason or "see `rnnsearch trials --state failed`"
                raise SearchError(
                    f"stopping: the last {failures_in_a_row} trials of {name!r} failed; "
                    f"last reason: {reason}"
                )
    return ran


def _finish(
    db: StudyDatabase,
    trial_id: int,
    study_id: int,
    number: int,
    engine: str,
    cfg: dict,
    status: str,
    started: float,
    *,
    reason: str | None = None,
    extra: dict | None = None,
) -> None:
    db.record_trial_info(
        trial_id=trial_id,
        study_id=study_id,
        number=number,
        engine=engine,
        config=cfg,
        status=status,
        reason=reason,
        wall_seconds=time.perf_counter() - started,
        extra=extra,
    )


def _spent_seconds(db: StudyDatabase, study: str) -> float:
    return sum(t.duration_s or 0.0 for t in db.trials(study) if t.state != "running")


def _prune_checkpoints(
    db: StudyDatabase, study: str, checkpoints: CheckpointStore, keep: int
) -> None:
    """Drop checkpoints of finished trials, except the best ``keep`` complete ones (for retrain).

    Checkpoints of interrupted trials stay until their queued copy has finished.
    """
    trials = db.trials(study)
    by_number = {t.number: t for t in trials}
    best = {t.number for t in db.best(study, top=keep)} if keep > 0 else set()
    pending_resume = {
        int(t.extra["resumed_from_trial"])
        for t in trials
        if t.state in ("running", "waiting") and "resumed_from_trial" in t.extra
    }
    waiting_copies = {t.number for t in trials if t.state == "waiting"}
    drop = []
    for number in checkpoints.numbers():
        t = by_number.get(number)
        if t is None or number in best or number in pending_resume:
            continue
        if t.state in ("complete", "pruned", "failed"):
            drop.append(number)
        elif t.state == "interrupted" and not waiting_copies and number not in pending_resume:
            # Its copy already ran (no queued copy left and none running from it).
            resumed = any(x.extra.get("resumed_from_trial") == number for x in trials)
            if resumed:
                drop.append(number)
    checkpoints.remove(drop)
