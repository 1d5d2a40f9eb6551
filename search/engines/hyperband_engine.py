"""The Hyperband engine: Keras Tuner's Hyperband over a Space, every trial recorded in the study.

Keras Tuner decides which configurations to train and for how many epochs (its oracle, its
project directory beside the database, its own resume). rnnsearch records each of its trials as
a trial of the study's Optuna study, with the same rows an Optuna-engine trial gets: parameters,
per-epoch metrics, objective, wall time, data fingerprint, library versions. So `best`, `trials`,
`optuna trials` and optuna-dashboard read Hyperband studies like any other.

A warm-started trial (Hyperband's successive halving: continue an earlier trial's weights for more
epochs) records the earlier trial's epochs as its own first epochs, so its learning curve and
epoch count describe the model it produced; ``extra`` names the trial it continued, the bracket,
the round and the epoch range it trained itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search import faults, tfenv

tfenv.quiet_import()

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import optuna  # noqa: E402

from search.checkpoints import default_root  # noqa: E402
from search.engines import kt_space, optuna_engine  # noqa: E402
from search.errors import SearchError, UsageError  # noqa: E402
from storage import StudyDatabase  # noqa: E402

ENGINE = "hyperband"
DEFAULT_FACTOR = 3
DEFAULT_ITERATIONS = 1
KT_TRIAL_ATTR = "kt_trial_id"


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _readable_json(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, ValueError):
        return None
    return text


@contextlib.contextmanager
def atomic_kt_state() -> Iterator[None]:
    """Make Keras Tuner write its JSON state atomically (temp file, fsync, rename).

    Keras Tuner truncates and rewrites oracle.json and trial.json in place: a kill at that moment
    leaves a file its resume cannot read. The previous good version of each file is kept as
    ``NAME.json.bak`` for :func:`repair_kt_state`.
    """
    from keras_tuner.src import utils as kt_utils

    original = kt_utils.save_json

    def save_json(path: Any, obj: Any) -> str:
        text = json.dumps(obj)
        path = os.fspath(path)
        previous = _readable_json(Path(path)) if os.path.exists(path) else None
        if previous is not None:
            _write_atomic(f"{path}.bak", previous)
        _write_atomic(path, text)
        return text

    kt_utils.save_json = save_json
    try:
        yield
    finally:
        kt_utils.save_json = original


def repair_kt_state(kt_dir: Path) -> list[Path]:
    """Roll torn Keras Tuner JSON files back to their last good version; return those repaired.

    A torn file (written by Keras Tuner without rnnsearch's atomic writes, or cut by a full disk)
    would stop Keras Tuner's resume. Finished trials are safe either way: the study database holds
    them, and a trial Keras Tuner no longer knows as finished is simply run again.
    """
    repaired = []
    for stray in kt_dir.rglob("*.tmp-*"):
        stray.unlink(missing_ok=True)
    for path in sorted(kt_dir.rglob("*.json")):
        if _readable_json(path) is not None:
            continue
        backup = _readable_json(path.with_name(path.name + ".bak"))
        if backup is None:
            raise SearchError(
                f"{path}: Keras Tuner's state file is torn and has no readable backup; move "
                f"{kt_dir} aside to start the Hyperband schedule again (the study's finished "
                "trials stay in the database)"
            )
        _write_atomic(os.fspath(path), backup)
        repaired.append(path)
    return repaired


def schedule_trials(max_epochs: int, factor: int, iterations: int) -> int:
    """How many trials Hyperband's schedule runs (Keras Tuner's bracket and round sizes)."""
    import math

    bracket0_end = math.ceil(1 + math.log(max_epochs, factor))
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    total = 0
    for bracket in range(brackets):
        end_size = bracket0_end / (bracket + 1)
        total += sum(math.ceil(end_size * factor ** (bracket - r)) for r in range(bracket + 1))
    return total * iterations


class _Recorder:
    """Mirrors Keras Tuner's trials into the study database, epoch by epoch."""

    def __init__(
        self,
        db: StudyDatabase,
        study: optuna.Study,
        study_id: int,
        plan: Any,
        source: Any,
        observer: Any,
        owner: dict[str, Any],
        versions: dict[str, str],
    ) -> None:
        self.db = db
        self.study = study
        self.study_id = study_id
        self.plan = plan
        self.source = source
        self.observer = observer
        self.owner = owner
        self.versions = versions
        self.distributions = {
            name: dist for name, (dist, _) in optuna_engine.distributions(plan.space).items()
        }
        self.current: dict[str, Any] | None = None
        self.ran = 0

    # -- configuration -------------------------------------------------------------------------
    def config_for(self, hp: Any) -> dict[str, Any]:
        sampled = kt_space.sampled_values(self.plan.space, hp.values)
        cfg = self.plan.space.resolve(sampled, max_epochs=self.plan.max_epochs)
        if "tuner/epochs" in hp.values:
            cfg["epochs"] = int(hp.values["tuner/epochs"])
        return cfg

    def _trial_for_kt_id(self, kt_trial_id: str) -> Any:
        """The latest finished study trial that recorded Keras Tuner trial ``kt_trial_id``."""
        found = None
        for t in self.db.trials(self.plan_study, ["complete"]):
            if t.extra.get(KT_TRIAL_ATTR) == kt_trial_id:
                found = t
        return found

    @property
    def plan_study(self) -> str:
        return self.study.study_name

    # -- trial lifecycle -----------------------------------------------------------------------
    def trial_begin(self, kt_trial: Any) -> None:
        hp = kt_trial.hyperparameters
        values = hp.values
        sampled = kt_space.sampled_values(self.plan.space, values)
        cfg = self.config_for(hp)
        self.study.enqueue_trial(
            sampled,
            user_attrs={KT_TRIAL_ATTR: kt_trial.trial_id},
            skip_if_exists=False,
        )
        trial = self.study.ask(fixed_distributions={n: self.distributions[n] for n in sampled})
        storage = self.db.optuna_storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        epochs = int(values.get("tuner/epochs", cfg["epochs"]))
        extra: dict[str, Any] = {
            **self.owner,
            KT_TRIAL_ATTR: kt_trial.trial_id,
            "bracket": int(values.get("tuner/bracket", 0)),
            "round": int(values.get("tuner/round", 0)),
            "initial_epoch": initial_epoch,
            "final_epoch": epochs,
        }
        parent = None
        if "tuner/trial_id" in values:
            parent = self._trial_for_kt_id(str(values["tuner/trial_id"]))
            extra["warm_start_of_kt_trial"] = str(values["tuner/trial_id"])
            if parent is not None:
                extra["warm_start_of"] = parent.number
                extra["warm_start_weights_epoch"] = parent.extra.get("best_epoch")
        self.db.record_trial_info(
            trial_id=trial_id,
            study_id=self.study_id,
            number=trial.number,
            engine=ENGINE,
            config=cfg,
            status="running",
            versions=self.versions,
            extra=extra,
        )
        if parent is not None:
            # The continued model's first epochs were trained by the earlier trial.
            for rec in self.db.epochs(parent.trial_id):
                if rec.epoch > initial_epoch:
                    break
                metrics = {
                    k: getattr(rec, k)
                    for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                    if getattr(rec, k) is not None
                }
                self.db.record_epoch(
                    trial_id=trial_id,
                    study_id=self.study_id,
                    epoch=rec.epoch,
                    metrics=metrics,
                    seconds=rec.seconds,
                )
                if rec.val_accuracy is not None:
                    trial.report(rec.val_accuracy, rec.epoch)
        self.current = {
            "trial": trial,
            "trial_id": trial_id,
            "config": cfg,
            "started": time.perf_counter(),
            "own": [],
            "initial_epoch": initial_epoch,
            "epochs": epochs,
        }
        faults.point("trial-started")
        self.observer.trial_started(trial.number, cfg, epochs)

    def epoch_done(self, model: Any, epoch: int, metrics: dict[str, float], seconds: float) -> bool:
        cur = self.current
        if cur is None:  # pragma: no cover - Keras Tuner always begins a trial first
            return False
        cur["own"].append((epoch, metrics))
        self.db.record_epoch(
            trial_id=cur["trial_id"],
            study_id=self.study_id,
            epoch=epoch,
            metrics=metrics,
            seconds=seconds,
        )
        faults.point("after-epoch")
        if "val_accuracy" in metrics:
            cur["trial"].report(metrics["val_accuracy"], epoch)
        self.observer.epoch_done(cur["trial"].number, epoch, cur["epochs"], metrics)
        return False

    def trial_end(self, kt_trial: Any) -> None:
        cur, self.current = self.current, None
        if cur is None:  # pragma: no cover
            return
        trial = cur["trial"]
        own = [(e, m["val_accuracy"]) for e, m in cur["own"] if "val_accuracy" in m]
        status = getattr(kt_trial.status, "value", str(kt_trial.status))
        wall = time.perf_counter() - cur["started"]
        common = {
            "trial_id": cur["trial_id"],
            "study_id": self.study_id,
            "number": trial.number,
            "engine": ENGINE,
            "config": cur["config"],
            "wall_seconds": wall,
        }
        if status == "COMPLETED" and own:
            value = max(v for _, v in own)
            best_epoch = next(e for e, v in own if v == value)
            self.db.record_trial_info(status="complete", extra={"best_epoch": best_epoch}, **common)
            self.study.tell(trial, value)
            state = "complete"
        else:
            message = (getattr(kt_trial, "message", None) or "").strip().splitlines()
            reason = (
                message[-1][:300]
                if message
                else f"Keras Tuner marked the trial {status.lower()} and reported no val_accuracy"
            )
            self.db.record_trial_info(status="failed", reason=reason, **common)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            value, state = None, "failed"
        self.ran += 1
        faults.point("trial-finished")
        counts = self.db.state_counts(self.plan_study)
        finished = sum(counts.get(s, 0) for s in ("complete", "pruned", "failed"))
        self.observer.trial_finished(trial.number, state, value, finished)

    def trial_interrupted(self, reason: str) -> None:
        cur, self.current = self.current, None
        if cur is None:
            return
        trial = cur["trial"]
        self.db.record_trial_info(
            trial_id=cur["trial_id"],
            study_id=self.study_id,
            number=trial.number,
            engine=ENGINE,
            config=cur["config"],
            status="interrupted",
            reason=reason,
            wall_seconds=time.perf_counter() - cur["started"],
        )
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


class _SpaceHyperModel(kt.HyperModel):
    """Builds and trains one configuration of the space (the same functions as the Optuna path)."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__(name="rnnsearch")
        self.recorder = recorder

    def build(self, hp: Any) -> keras.Model:
        from search.model import build_model

        cfg = self.recorder.config_for(hp)
        prepared = self.recorder.source.prepare(cfg)
        model = build_model(cfg, prepared.spec)
        cur = self.recorder.current
        if cur is not None:
            self.recorder.db.record_trial_info(
                trial_id=cur["trial_id"],
                study_id=self.recorder.study_id,
                number=cur["trial"].number,
                engine=ENGINE,
                config=cfg,
                status="running",
                data_fingerprint=prepared.fingerprint,
                param_count=int(model.count_params()),
            )
        return model

    def fit(self, hp: Any, model: keras.Model, *args: Any, **kwargs: Any) -> dict[str, float]:
        from search.train import fit

        cfg = self.recorder.config_for(hp)
        prepared = self.recorder.source.prepare(cfg)
        result = fit(
            model,
            prepared,
            cfg,
            self.recorder,
            initial_epoch=int(kwargs.get("initial_epoch", 0)),
            callbacks=list(kwargs.get("callbacks") or []),
        )
        values = [h["val_accuracy"] for h in result.history if "val_accuracy" in h]
        if not values:
            raise kt.errors.FailedTrialError("training reported no val_accuracy")
        return {"val_accuracy": max(values)}


class _RecordingHyperband(kt.Hyperband):
    def __init__(self, recorder: _Recorder, max_trials: int | None, **kwargs: Any) -> None:
        self._recorder = recorder
        super().__init__(**kwargs)
        # Not part of Keras Tuner's saved state: set on every start, counting all trials so far.
        self.oracle.max_trials = max_trials

    def on_trial_begin(self, trial: Any) -> None:
        super().on_trial_begin(trial)
        keras.utils.set_random_seed(
            (self._recorder.plan.seed + len(self.oracle.trials)) % (2**32 - 1)
        )
        self._recorder.trial_begin(trial)

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)
        self._recorder.trial_end(trial)


def run_hyperband(db: StudyDatabase, req: Any, plan: Any, source: Any, observer: Any) -> int:
    """Run (or resume) Keras Tuner's Hyperband on the study; return how many trials ran."""
    from search.service import library_versions
    from search.worker import _owner, finished_count, record_study, recover_dead_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = db.optuna_storage
    study = optuna.create_study(
        study_name=req.study,
        storage=storage,
        direction="maximize",
        # Keras Tuner chooses every value; the sampler only sees fixed, enqueued parameters.
        sampler=optuna.samplers.RandomSampler(seed=plan.seed),
        load_if_exists=True,
    )
    study_id = db.study_id(req.study)
    options = dict(plan.config.options) if plan.config else {}
    factor = int(getattr(req, "hyperband_factor", None) or options.get("factor", DEFAULT_FACTOR))
    iterations = int(
        getattr(req, "hyperband_iterations", None)
        or options.get("hyperband_iterations", DEFAULT_ITERATIONS)
    )
    if factor < 2:
        raise UsageError(f"--factor {factor}: expected an integer >= 2")
    if iterations < 1:
        raise UsageError(f"--hyperband-iterations {iterations}: expected a positive integer")
    stored_max = options.get("max_epochs")
    if plan.existing and stored_max is not None and plan.max_epochs != stored_max:
        raise UsageError(
            f"--max-epochs {plan.max_epochs}: study {req.study!r} runs Hyperband with "
            f"--max-epochs {stored_max}; its schedule cannot change (omit --max-epochs)"
        )
    kt_dir = options.get("kt_dir") or str(default_root(db.url, req.study, kind="kt"))
    # Without --trials, Hyperband's schedule decides how many trials run. --trials N caps Keras
    # Tuner's trials at N in all (resumes included); --add N allows N more than the last cap.
    max_trials = options.get("kt_max_trials")
    if req.trials:
        max_trials = int(req.trials)
    elif req.add:
        max_trials = (max_trials or len(db.trials(req.study))) + int(req.add)
    schedule = schedule_trials(plan.max_epochs, factor, iterations)
    target = min(max_trials, schedule) if max_trials else schedule
    options.update(
        {
            "max_epochs": plan.max_epochs,
            "schedule_trials": schedule,
            "factor": factor,
            "hyperband_iterations": iterations,
            "kt_dir": kt_dir,
            "kt_max_trials": max_trials,
        }
    )
    record_study(db, study, study_id, plan, source, options, target)
    if not plan.existing:
        study.set_user_attr("rnnsearch_kt_dir", kt_dir)

    def on_interrupted(study_: Any, frozen: Any, reason: str | None = None) -> None:
        # Keras Tuner re-runs its interrupted trial on resume; the cut record stays as history.
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        rec = next((t for t in db.trials(req.study, ["running"]) if t.trial_id == trial_id), None)
        db.record_trial_info(
            trial_id=trial_id,
            study_id=study_id,
            number=frozen.number,
            engine=ENGINE,
            config=rec.config if rec else dict(frozen.params),
            status="interrupted",
            reason=reason or "its worker stopped mid-trial; Keras Tuner runs it again on resume",
        )

    recovered = recover_dead_trials(db, study, study_id, on_interrupted)
    recorder = _Recorder(db, study, study_id, plan, source, observer, _owner(), library_versions())
    observer.study_ready(
        req.study, finished_count(db, req.study), target, plan.existing or bool(recovered)
    )
    kt_path = os.fspath(kt_dir)
    os.makedirs(os.path.dirname(kt_path), exist_ok=True)
    if os.path.isdir(kt_path):
        for path in repair_kt_state(Path(kt_path)):
            print(f"rnnsearch: {path} was torn; restored its last good version", file=sys.stderr)
    # Keras Tuner prints ("Reloading Tuner from ...") to stdout, which is ours (--format json).
    with atomic_kt_state(), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        # Optuna's heartbeat thread runs only inside Study.optimize: here recover_dead_trials
        # (pid on this host) finds dead trials instead. Hyperband's warm start loads weights
        # into a fresh optimiser by design.
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
        warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
        tuner = _RecordingHyperband(
            recorder,
            max_trials,
            hypermodel=_SpaceHyperModel(recorder),
            objective=kt.Objective("val_accuracy", direction="max"),
            max_epochs=plan.max_epochs,
            factor=factor,
            hyperband_iterations=iterations,
            seed=plan.seed,
            hyperparameters=kt_space.hyperparameters(plan.space),
            tune_new_entries=False,
            allow_new_entries=False,
            directory=os.path.dirname(kt_path),
            project_name=os.path.basename(kt_path),
            overwrite=False,
            max_consecutive_failed_trials=5,
        )
        try:
            tuner.search(verbose=0)
        except KeyboardInterrupt:
            recorder.trial_interrupted(
                "interrupted by the user (Ctrl-C); Keras Tuner runs it again on resume"
            )
            raise
        except kt.errors.FatalError as exc:
            raise SearchError(
                f"Keras Tuner stopped the search: {str(exc).splitlines()[0]}"
            ) from exc
    return recorder.ran
