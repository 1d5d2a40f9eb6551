"""The one place that wires a run together: plan, data, engine, runner, storage.

:func:`run_search` validates everything (options, space, data) before it creates or writes
anything, so a refused run leaves no database and no artefact behind. The CLI is a thin layer
over it and over the query functions of :mod:`storage`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import compile_cache
from search.backend import activate
from search.errors import UsageError
from search.plan import ENGINES, RunRequest, StudyPlan, check_request, resolve_plan
from search.trials import (
    Observer,
    SilentObserver,
    TrialRunner,
    finished_count,
    library_versions,
)
from spaces import Space, SpaceError, load_space
from storage import (
    FINISHED_STATES,
    StudyConfig,
    StudyDatabase,
    StudyNotFoundError,
    TrialRecord,
    TrialState,
)

if TYPE_CHECKING:
    from search.data import DataSource

__all__ = [
    "ENGINES",
    "Observer",
    "RunRequest",
    "RunSummary",
    "SilentObserver",
    "SpaceError",
    "delete_study",
    "library_versions",
    "run_search",
]


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
    #: A multi-objective study: its objectives and its non-dominated trials (best --pareto).
    objectives: tuple[str, ...] = ("val_accuracy",)
    front: list[TrialRecord] = field(default_factory=list)
    #: Stored settings of the study that this run replaced, one line each.
    changed: tuple[str, ...] = ()


def plan_for(req: RunRequest, requested_space: Space | None) -> StudyPlan:
    """Resolve the run's plan by reading the database only (nothing is created or written)."""
    from storage import StorageURLError
    from storage.database import check_url, resolve_url, sqlite_path

    url = check_url(resolve_url(req.storage))
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if req.resume_only:
            raise UsageError(f"no study named {req.study!r} to resume: {path} does not exist")
        if not path.parent.is_dir():
            raise StorageURLError(f"{path}: the folder {path.parent} does not exist")
        return resolve_plan(
            req, None, exists=False, finished=0, trials_so_far=0, requested_space=requested_space
        )
    try:
        view = StudyDatabase(req.storage, create=False)
    except StudyNotFoundError:  # an empty database: the study will be new
        if req.resume_only:
            raise
        return resolve_plan(
            req, None, exists=False, finished=0, trials_so_far=0, requested_space=requested_space
        )
    try:
        try:
            stored = view.study_config(req.study)
            exists = True
        except StudyNotFoundError:
            stored, exists = None, False
        finished = trials_so_far = 0
        if exists:
            counts = view.state_counts(req.study)
            finished = sum(counts.get(s, 0) for s in FINISHED_STATES)
            trials_so_far = sum(counts.values())
        if req.resume_only and not exists:
            raise UsageError(f"no study named {req.study!r} in {view.display_url} to resume")
        return resolve_plan(
            req,
            stored,
            exists=exists,
            finished=finished,
            trials_so_far=trials_so_far,
            requested_space=requested_space,
        )
    finally:
        view.dispose()


def fit_to_source(space: Space, source: DataSource) -> tuple[Space, dict[str, Any] | None]:
    """``space`` fitted to ``source`` if it asks for it (``fit = "data"``, the default), and
    what the study stores about the fitting (None for a space that is not fitted)."""
    if space.fit is None:
        return space, None
    from spaces.fit import fit_record, fit_space

    stats = source.fit_stats()
    return fit_space(space, stats), fit_record(space, stats)


def fitted_plan(plan: StudyPlan, source: DataSource) -> StudyPlan:
    """The plan with its space fitted to the data. Only a template is fitted: a study stores
    the fitted space, so its resumes and workers run it as stored and never fit again."""
    if plan.space.fit is None:
        return plan
    space, record = fit_to_source(plan.space, source)
    return replace(plan, space=space, space_fit=record)


def record_study(
    db: StudyDatabase, plan: StudyPlan, source: DataSource, uid: str, extra: dict[str, str]
) -> StudyConfig:
    """Store what the study runs with (both engines); a new study also gets Optuna user attrs."""
    import optuna

    study_id = db.study_id(plan.study)
    saved = db.save_study_config(
        StudyConfig(
            name=plan.study,
            study_id=study_id,
            engine=plan.engine,
            space_name=plan.space.name,
            space_json=plan.space.to_json(),
            data=source.description,
            seed=plan.seed,
            target_trials=plan.target,
            options={**plan.options(), **extra},
            created_at=plan.stored.created_at if plan.stored else None,
            uid=uid,
        )
    )
    if not plan.existing:
        study = optuna.load_study(study_name=plan.study, storage=db.optuna_storage)
        study.set_user_attr("rnnsearch_engine", plan.engine)
        study.set_user_attr("rnnsearch_space", plan.space.name)
        study.set_user_attr("rnnsearch_seed", plan.seed)
        study.set_user_attr("rnnsearch_data", source.description["source"])
        for key, value in extra.items():
            study.set_user_attr(f"rnnsearch_{key}", value)
    return saved


def run_search(
    req: RunRequest,
    observer: Observer | None = None,
    *,
    hard_abort: bool = False,
    progress: str = "off",
) -> RunSummary:
    """Create or continue a study and run trials until it holds its target of finished trials.

    ``hard_abort``: a second Ctrl-C ends the process (the command line; never in a notebook).
    ``progress``: how ``--workers N`` processes show theirs (``log``: their own lines, else none).
    """
    observer = observer or SilentObserver()
    check_request(req)
    compile_cache.check_setting()
    # Everything is validated before the database is touched: a refused run creates nothing.
    requested_space = load_space(req.space) if req.space is not None else None
    plan = plan_for(req, requested_space)
    # Before anything imports Keras (reading text data fits a Keras vectoriser).
    activate(plan.backend)

    from search.data import (
        DATA_OPTION_DEFAULTS,
        check_options_apply,
        check_unchanged,
        load_source,
    )

    if not plan.existing:  # an existing study's options were checked when it was created
        check_options_apply(plan.data, {k: getattr(req, k) for k in DATA_OPTION_DEFAULTS})
    if plan.stored is not None:
        check_unchanged(plan.stored.data, plan.data, plan.study)
    source = load_source(plan.data, limit=plan.limit, options=plan.data_options)
    plan = replace(fitted_plan(plan, source), token_input=source.kind == "tokens")
    db = StudyDatabase(req.storage)
    try:
        started = time.perf_counter()
        ran = _run(db, plan, source, observer, hard_abort=hard_abort, progress=progress)
        seconds = time.perf_counter() - started
        counts: dict[str, int] = {}
        for t in db.trials(plan.study):
            counts[t.state] = counts.get(t.state, 0) + 1
        best = db.best(plan.study, top=1)
        front: list[TrialRecord] = []
        if plan.multi_objective:
            from search.objectives import pareto_trials

            front = pareto_trials(db, plan.study, plan.objectives)[1]
        return RunSummary(
            study=plan.study,
            storage=db.display_url,
            target=plan.target,
            finished=sum(counts.get(s, 0) for s in FINISHED_STATES),
            ran=ran,
            seconds=seconds,
            best=best[0] if best else None,
            counts=counts,
            objectives=plan.objectives,
            front=front,
            changed=plan.changed,
        )
    finally:
        db.dispose()


def _announce(db: StudyDatabase, plan: StudyPlan, observer: Observer, resumed: bool) -> None:
    """Tell the observer where the study stands (finished trials, target, time budget)."""
    observer.study_ready(plan.study, finished_count(db, plan.study), plan.target, resumed)
    observer.time_budget(plan.time_budget, db.spent_seconds(plan.study), plan.workers)
    if plan.changed:
        observer.settings_changed(plan.changed)


def _run(
    db: StudyDatabase,
    plan: StudyPlan,
    source: DataSource,
    observer: Observer,
    *,
    hard_abort: bool = False,
    progress: str = "off",
) -> int:
    from search import tfenv
    from search.artefacts import KERAS_TUNER, StudyArtefacts, artefact_base

    tfenv.quiet_import()

    def study_artefacts(study_id: int) -> tuple[str, StudyArtefacts]:
        # the study's identity before any file is named by it: two processes starting the
        # same new study at once agree on one
        uid = db.claim_study_uid(study_id, plan.uid or str(uuid.uuid4()))
        return uid, StudyArtefacts(db, uid, artefact_base(db.url, plan.checkpoint_dir))

    if plan.engine == "hyperband":
        from search.engines.hyperband_engine import HyperbandEngine, atomic_kt_state

        study = HyperbandEngine.create_study(db, plan)
        uid, artefacts = study_artefacts(db.study_id(plan.study))
        stored_kt = plan.stored.options.get("kt_dir") if plan.stored else None
        # Studies from before artefacts were keyed by identity keep their (unrecorded) folder.
        kt_dir = Path(stored_kt) if stored_kt else artefacts.root / KERAS_TUNER
        record_study(db, plan, source, uid, {"kt_dir": str(kt_dir)})
        if not stored_kt:
            artefacts.kt_project()
        engine = HyperbandEngine(db, plan, study, db.study_id(plan.study), kt_dir)
        runner = TrialRunner(
            db, plan, engine.study_id, source, engine, artefacts.checkpoints(), observer
        )
        recovered = runner.recover()
        _announce(db, plan, observer, plan.existing or bool(recovered))
        with atomic_kt_state(), warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            # Hyperband's warm start loads weights into a fresh optimiser by design.
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
            with tfenv.startup_objects_frozen():
                ran = runner.run_all(hard_abort=hard_abort)
        runner.drop_checkpoints()
        return ran

    from search.engines.optuna_engine import OptunaEngine
    from search.workers import spawn_workers

    engine = OptunaEngine.open(db, plan)
    uid, artefacts = study_artefacts(engine.study_id)
    record_study(db, plan, source, uid, {})
    if not plan.existing:
        engine.new_study()
    runner = TrialRunner(
        db, plan, engine.study_id, source, engine, artefacts.checkpoints(), observer
    )
    recovered = runner.recover()
    if not plan.join_only:
        # The slots in use are the finished trials plus those running now (dead ones were just
        # recovered); other workers joining later share this count.
        running = len(db.trials(plan.study, [TrialState.RUNNING.value]))
        db.set_claimed(engine.study_id, finished_count(db, plan.study) + running)
    _announce(db, plan, observer, plan.existing or bool(recovered))
    if plan.workers > 1:
        return spawn_workers(
            db,
            plan.study,
            plan.workers,
            observer,
            progress=progress,
            tensorboard=plan.tensorboard_dir,
        )

    def before_trial() -> bool:
        # Another local worker killed mid-trial is noticed before this one's next trial.
        runner.recover()
        return True

    with tfenv.startup_objects_frozen():
        return runner.run_all(before_trial, hard_abort=hard_abort)


def delete_study(db: StudyDatabase, study: str) -> int:
    """Delete a study, its rows and every artefact it recorded creating; how many artefacts."""
    from search.artefacts import StudyArtefacts, artefact_base, remove_path

    config = db.study_config(study)
    removed = 0
    if config is not None and config.uid is not None:
        artefacts = StudyArtefacts.of(db, config)
        removed = artefacts.remove()
        artefacts.remove_empty_folders()
    db.delete_study(study)
    for rec in db.purge_orphans():
        # where this database keeps files by default: a deleted study's --checkpoint-dir is
        # unknown now, and a copied database's records must not reach the original's files
        own = StudyArtefacts(db, rec.study_uid, artefact_base(db.url)).own_path(rec.path)
        if own is not None:
            remove_path(own)
    return removed
