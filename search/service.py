"""The one place that wires a study together: space, data, engine, model, training, storage.

The CLI is a thin layer over :func:`run_search` and the query functions in :mod:`search.queries`.
"""

from __future__ import annotations

import logging
import platform
import secrets
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from search.errors import UsageError
from spaces import Space, SpaceError, load_space
from storage import StudyConfig, StudyDatabase, StudyNotFoundError, TrialRecord

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
    def epoch_done(
        self, number: int, epoch: int, epochs: int, metrics: dict[str, float]
    ) -> None: ...
    def trial_finished(
        self, number: int, state: str, value: float | None, finished: int
    ) -> None: ...


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
    #: Stop a trial once validation accuracy has not improved for this many epochs (0: never).
    patience: int | None = None
    seed: int | None = None
    allow_space_change: bool = False
    resume_only: bool = False
    time_budget: float | None = None
    keep_checkpoints: int | None = None
    #: >1: run this many worker processes on the study (`run --workers N`).
    workers: int | None = None
    #: A worker joining a running study: it neither changes the target nor recounts slots.
    join_only: bool = False
    #: Data options (issue 7): columns of a text/long CSV or JSONL file, and bucketing by length.
    text_col: str | None = None
    label_col: str | None = None
    split_col: str | None = None
    bucketing: bool | None = None
    #: Hyperband: reduction factor and iterations (None: the study's stored value or default).
    hyperband_factor: int | None = None
    hyperband_iterations: int | None = None


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
    patience: int | None = None


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
            patience=req.patience or None,
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
        # --patience 0 turns early stopping off on a study that had it
        patience=(req.patience if req.patience is not None else stored.options.get("patience"))
        or None,
    )


def _check_engine_options(req: RunRequest, engine: str) -> None:
    """Refuse options the study's engine cannot honour, before any data is read."""
    if engine == "hyperband":
        if req.join_only:
            raise UsageError(
                f"study {req.study!r} runs --engine hyperband, whose Keras Tuner oracle lives in "
                "one process: `rnnsearch worker` cannot join it (use `rnnsearch resume`)"
            )
        if (req.workers or 1) > 1:
            raise UsageError(
                f"--workers {req.workers}: --engine hyperband runs one worker (Keras Tuner's "
                "oracle lives in one process); use --engine optuna for parallel workers"
            )
        if req.time_budget:
            raise UsageError("--time-budget: not supported by --engine hyperband; use --trials")
        if req.patience:
            raise UsageError(
                f"--patience {req.patience}: not supported by --engine hyperband (Hyperband "
                "decides each trial's epochs itself); use --engine optuna"
            )
        if req.hyperband_factor is not None and req.hyperband_factor < 2:
            raise UsageError(f"--factor {req.hyperband_factor}: expected an integer >= 2")
        if req.hyperband_iterations is not None and req.hyperband_iterations < 1:
            raise UsageError(
                f"--hyperband-iterations {req.hyperband_iterations}: expected a positive integer"
            )
    elif req.hyperband_factor is not None or req.hyperband_iterations is not None:
        flag = "--factor" if req.hyperband_factor is not None else "--hyperband-iterations"
        raise UsageError(f"{flag}: applies to --engine hyperband only (this study runs {engine})")


def _finished_count(db: StudyDatabase, study: str) -> int:
    return sum(1 for t in db.trials(study) if t.state in FINISHED_STATES)


def run_search(req: RunRequest, observer: Observer | None = None) -> RunSummary:
    """Create or continue a study and run trials until it holds its target of finished trials."""
    observer = observer or SilentObserver()
    for name, value in (
        ("--trials", req.trials),
        ("--add", req.add),
        ("--max-epochs", req.max_epochs),
    ):
        _check_positive(name, value)
    if req.patience is not None and req.patience < 0:
        raise UsageError(f"--patience {req.patience}: expected 0 (off) or a positive integer")
    if req.engine is not None and req.engine not in ENGINES:
        raise UsageError(f"--engine {req.engine}: expected one of {', '.join(ENGINES)}")
    # Validate the space before the database is touched: a bad file never creates a study.
    requested_space = _load_space(req.space)

    from search.data import data_options, load_source

    db = StudyDatabase(req.storage)
    try:
        plan = plan_run(db, req, requested_space)
        _check_engine_options(req, plan.engine)
        source = load_source(plan.data, limit=plan.limit, options=data_options(req, plan.config))
        started = time.perf_counter()
        if plan.engine == "hyperband":
            from search.engines.hyperband_engine import run_hyperband

            ran = run_hyperband(db, req, plan, source, observer)
        else:
            from search.worker import run_optuna

            ran = run_optuna(db, req, plan, source, observer)
        seconds = time.perf_counter() - started
        trials = db.trials(req.study)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        best = db.best(req.study, top=1)
        return RunSummary(
            study=req.study,
            storage=db.display_url,
            target=(
                (db.study_config(req.study).target_trials or 0)
                if plan.engine == "hyperband"
                else plan.target
            ),
            finished=sum(counts.get(s, 0) for s in FINISHED_STATES),
            ran=ran,
            seconds=seconds,
            best=best[0] if best else None,
            counts=counts,
        )
    finally:
        db.dispose()


__all__ = [
    "ENGINES",
    "Observer",
    "RunRequest",
    "RunSummary",
    "SilentObserver",
    "SpaceError",
    "run_search",
]
