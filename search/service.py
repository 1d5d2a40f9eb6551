"""The one place that wires a study together: space, data, engine, model, training, storage.

The CLI is a thin layer over :func:`run_search` and the query functions in :mod:`search.queries`.
"""

from __future__ import annotations

import gc
import logging
import platform
import secrets
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from spaces import Space, SpaceError, load_space
from storage import StudyConfig, StudyDatabase, StudyNotFoundError, TrialRecord

from search.errors import SearchError, TrialFailed, UsageError

log = logging.getLogger("rnnsearch")

ENGINES = ("optuna", "hyperband")
DEFAULT_SPACE = "default"
DEFAULT_DATA = "imdb"
DEFAULT_TRIALS = 20
DEFAULT_MAX_EPOCHS = 5
#: The search stops when this many trials in a row fail: something is wrong beyond one trial.
MAX_CONSECUTIVE_FAILURES = 5
#: Trials that count toward a study's budget; interrupted trials are run again, not counted.
FINISHED_STATES = ("complete", "pruned", "failed")


class Observer(Protocol):
    """Progress events of a search (the CLI shows them with Rich; tests may record them)."""

    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None: ...
    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None: ...
    def epoch_done(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None: ...
    def trial_finished(self, number: int, state: str, value: float | None, finished: int) -> None: ...


class SilentObserver:
    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None:
        pass

    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None:
        pass

    def epoch_done(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        pass

    def trial_finished(self, number: int, state: str, value: float | None, finished: int) -> None:
        pass


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for; None means 'the study's stored value, or the default'."""

    study: str
    storage: str | None = None
    space: str | None = None
    engine: str | None = None
    trials: int | None = None
    add: int | None = None
    data: str | None = None
    limit: int | None = None
    max_epochs: int | None = None
    seed: int | None = None
    allow_space_change: bool = False
    resume_only: bool = False


@dataclass
class RunSummary:
    study: str
    storage: str
    target: int
    finished: int
    ran: int
    seconds: float
    best: TrialRecord | None
    counts: dict[str, int] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("rnnsearch", "tensorflow", "keras", "optuna", "keras-tuner", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{name} {value}: expected a positive integer")


@dataclass
class _Plan:
    """A request reconciled with what the study already stores."""

    config: StudyConfig | None
    space: Space
    engine: str
    data: str
    limit: int | None
    seed: int
    max_epochs: int
    target: int
    existing: bool


def _load_space(name: str | None) -> Space | None:
    return None if name is None else load_space(name)


def plan_run(db: StudyDatabase, req: RunRequest, requested_space: Space | None) -> _Plan:
    """Decide space, data, seed and target for a new or existing study, refusing conflicts."""
    try:
        stored = db.study_config(req.study)
        exists = True
    except StudyNotFoundError:
        stored, exists = None, False
    if exists and stored is None:
        raise UsageError(
            f"study {req.study!r} exists in {db.display_url} but was not created by rnnsearch; "
            "choose another --study name"
        )
    if stored is None:
        if req.resume_only:
            raise UsageError(f"no study named {req.study!r} in {db.display_url} to resume")
        if req.add is not None:
            raise UsageError(f"--add needs an existing study; {req.study!r} is new (use --trials)")
        engine = req.engine or "optuna"
        space = requested_space or load_space(DEFAULT_SPACE)
        return _Plan(
            config=None,
            space=space,
            engine=engine,
            data=req.data or DEFAULT_DATA,
            limit=req.limit,
            seed=req.seed if req.seed is not None else secrets.randbelow(2**31 - 1),
            max_epochs=req.max_epochs or DEFAULT_MAX_EPOCHS,
            target=req.trials or DEFAULT_TRIALS,
            existing=False,
        )

    if req.engine is not None and req.engine != stored.engine:
        raise UsageError(
            f"study {req.study!r} was run with --engine {stored.engine}; mixing engines in one "
            f"study is not supported (got --engine {req.engine}; use a new --study name)"
        )
    stored_space = Space.from_json(stored.space_json, source=f"study {req.study!r}")
    space = stored_space
    if requested_space is not None and requested_space.fingerprint != stored_space.fingerprint:
        if not req.allow_space_change:
            raise UsageError(
                f"--space {req.space}: differs from the space study {req.study!r} was started "
                f"with ({stored.space_name}); pass --allow-space-change to continue with the new "
                "space, or omit --space to keep the stored one"
            )
        space = requested_space
    stored_data = stored.data.get("source")
    if req.data is not None and req.data != stored_data:
        raise UsageError(
            f"--data {req.data}: study {req.study!r} searches {stored_data}; trials on other data "
            "are not comparable (omit --data, or use a new --study name)"
        )
    if req.limit is not None and req.limit != stored.data.get("limit"):
        raise UsageError(
            f"--limit {req.limit}: study {req.study!r} was started with --limit "
            f"{stored.data.get('limit')} (omit --limit, or use a new --study name)"
        )
    if req.seed is not None and req.seed != stored.seed:
        raise UsageError(
            f"--seed {req.seed}: study {req.study!r} was started with seed {stored.seed}; "
            "omit --seed to continue it"
        )
    finished = _finished_count(db, req.study)
    stored_target = stored.target_trials or 0
    if req.resume_only:
        if req.add is not None:
            target = stored_target + req.add
        elif req.trials is not None:
            target = req.trials
        else:
            target = stored_target
    else:
        # `run` again: an interrupted study first reaches its target; a finished one gets
        # --trials more (or --add more).
        extra = req.add if req.add is not None else req.trials
        if finished < stored_target and req.add is None:
            target = stored_target
        else:
            target = max(stored_target, finished) + (extra or DEFAULT_TRIALS)
    return _Plan(
        config=stored,
        space=space,
        engine=stored.engine,
        data=stored_data,
        limit=stored.data.get("limit"),
        seed=stored.seed if stored.seed is not None else 0,
        max_epochs=req.max_epochs or stored.options.get("max_epochs", DEFAULT_MAX_EPOCHS),
        target=target,
        existing=True,
    )


def _finished_count(db: StudyDatabase, study: str) -> int:
    return sum(1 for t in db.trials(study) if t.state in FINISHED_STATES)


def run_search(req: RunRequest, observer: Observer | None = None) -> RunSummary:
    """Create or continue a study and run trials until it holds its target of finished trials."""
    observer = observer or SilentObserver()
    for name, value in (("--trials", req.trials), ("--add", req.add), ("--max-epochs", req.max_epochs)):
        _check_positive(name, value)
    if req.engine is not None and req.engine not in ENGINES:
        raise UsageError(f"--engine {req.engine}: expected one of {', '.join(ENGINES)}")
    # Validate the space before the database is touched: a bad file never creates a study.
    requested_space = _load_space(req.space)

    from search.data import load_source

    db = StudyDatabase(req.storage)
    try:
        plan = plan_run(db, req, requested_space)
        if plan.engine != "optuna":
            raise UsageError(f"--engine {plan.engine}: not available yet; use --engine optuna")
        source = load_source(plan.data, limit=plan.limit)
        started = time.perf_counter()
        ran = _run_optuna(db, req, plan, source, observer)
        seconds = time.perf_counter() - started
        trials = db.trials(req.study)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        best = db.best(req.study, top=1)
        return RunSummary(
            study=req.study,
            storage=db.display_url,
            target=plan.target,
            finished=sum(counts.get(s, 0) for s in FINISHED_STATES),
            ran=ran,
            seconds=seconds,
            best=best[0] if best else None,
            counts=counts,
        )
    finally:
        db.dispose()


class _OptunaReporter:
    """Per-epoch: store the metrics, tell Optuna, and stop the trial when Optuna prunes it."""

    def __init__(self, db: StudyDatabase, trial: Any, trial_id: int, study_id: int, epochs: int, observer: Observer) -> None:
        self.db = db
        self.trial = trial
        self.trial_id = trial_id
        self.study_id = study_id
        self.epochs = epochs
        self.observer = observer
        self.pruned = False

    def epoch_done(self, model: Any, epoch: int, metrics: dict[str, float], seconds: float) -> bool:
        self.db.record_epoch(
            trial_id=self.trial_id, study_id=self.study_id, epoch=epoch, metrics=metrics, seconds=seconds
        )
        self.observer.epoch_done(self.trial.number, epoch, self.epochs, metrics)
        value = metrics.get("val_accuracy")
        if value is None:
            return False
        self.trial.report(value, epoch)
        if epoch < self.epochs and self.trial.should_prune():
            self.pruned = True
            return True
        return False


def _run_optuna(db: StudyDatabase, req: RunRequest, plan: _Plan, source: Any, observer: Observer) -> int:
    import keras
    import optuna

    from search.engines import optuna_engine
    from search.model import build_model
    from search.train import fit

    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
    config = StudyConfig(
        name=req.study,
        study_id=study_id,
        engine=plan.engine,
        space_name=plan.space.name,
        space_json=plan.space.to_json(),
        data=source.description,
        seed=plan.seed,
        target_trials=plan.target,
        options={
            **(plan.config.options if plan.config else {}),
            "max_epochs": plan.max_epochs,
            "sampler": "TPESampler(multivariate, group)",
            "pruner": "MedianPruner(n_startup_trials=3, n_warmup_steps=1)",
        },
        created_at=plan.config.created_at if plan.config else None,
    )
    db.save_study_config(config)
    if not plan.existing:
        study.set_user_attr("rnnsearch_engine", plan.engine)
        study.set_user_attr("rnnsearch_space", plan.space.name)
        study.set_user_attr("rnnsearch_seed", plan.seed)
        study.set_user_attr("rnnsearch_data", source.description["source"])

    versions = library_versions()
    finished = _finished_count(db, req.study)
    observer.study_ready(req.study, finished, plan.target, plan.existing)

    def objective(trial: optuna.Trial) -> float:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        sampled = optuna_engine.suggest(trial, plan.space)
        cfg = plan.space.resolve(sampled, max_epochs=plan.max_epochs)
        db.record_trial_info(
            trial_id=trial_id,
            study_id=study_id,
            number=trial.number,
            engine=plan.engine,
            config=cfg,
            status="running",
            versions=versions,
        )
        observer.trial_started(trial.number, cfg, int(cfg["epochs"]))
        started = time.perf_counter()
        # Without this, every trial's graphs and weights stay in Keras' global state.
        keras.backend.clear_session(free_memory=True)
        gc.collect()
        keras.utils.set_random_seed((plan.seed + trial.number) % (2**32 - 1))
        reporter = _OptunaReporter(db, trial, trial_id, study_id, int(cfg["epochs"]), observer)
        try:
            prepared = source.prepare(cfg)
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
            result = fit(model, prepared, cfg, reporter)
        except TrialFailed as exc:
            db.record_trial_info(
                trial_id=trial_id, study_id=study_id, number=trial.number, engine=plan.engine,
                config=cfg, status="failed", reason=str(exc),
                wall_seconds=time.perf_counter() - started,
            )
            raise
        except KeyboardInterrupt:
            db.record_trial_info(
                trial_id=trial_id, study_id=study_id, number=trial.number, engine=plan.engine,
                config=cfg, status="interrupted", reason="interrupted by the user (Ctrl-C)",
                wall_seconds=time.perf_counter() - started,
            )
            raise
        wall = time.perf_counter() - started
        extra = {"best_epoch": result.best_epoch}
        if reporter.pruned:
            db.record_trial_info(
                trial_id=trial_id, study_id=study_id, number=trial.number, engine=plan.engine,
                config=cfg, status="pruned", wall_seconds=wall, extra=extra,
                reason=f"pruned by the median rule after epoch {result.epochs_run}",
            )
            raise optuna.TrialPruned(f"pruned after epoch {result.epochs_run}")
        value = result.best_val_accuracy
        if value is None:
            raise TrialFailed("training reported no val_accuracy")
        db.record_trial_info(
            trial_id=trial_id, study_id=study_id, number=trial.number, engine=plan.engine,
            config=cfg, status="complete", wall_seconds=wall, extra=extra,
        )
        return value

    ran = 0
    failures_in_a_row = 0
    while finished < plan.target:
        before = len(study.trials)
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
        ran += 1
        last = study.trials[-1] if len(study.trials) > before else None
        finished = _finished_count(db, req.study)
        if last is not None:
            state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(
                last.state.name, last.state.name.lower()
            )
            observer.trial_finished(last.number, state, last.value, finished)
            failures_in_a_row = failures_in_a_row + 1 if state == "failed" else 0
        if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
            reason = db.trials(req.study)[-1].reason or "see `rnnsearch trials --state failed`"
            raise SearchError(
                f"stopping: the last {failures_in_a_row} trials of {req.study!r} failed; "
                f"last reason: {reason}"
            )
    return ran


__all__ = [
    "ENGINES",
    "Observer",
    "RunRequest",
    "RunSummary",
    "SilentObserver",
    "SpaceError",
    "run_search",
]
