"""The Optuna engine: a Space as Optuna distributions, TPE sampling and median pruning.

:class:`OptunaEngine` decides (the runner in :mod:`search.trials` runs): each trial claims one of
the study's slots (one atomic UPDATE, so any number of workers stop at exactly the target), asks
Optuna for parameters (queued copies of cut trials and the space's start points first), reports
every epoch to the pruner and tells Optuna how the trial ended. A cut trial's lineage continues
through a queued copy with the same parameters.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import optuna

from search.engines.pruners import make_pruner
from search.objectives import directions
from search.plan import StudyPlan
from search.trials import CutTrial, TrialOrder, TrialOutcome
from spaces import Choice, Fixed, FloatRange, IntRange, Space
from storage import StudyDatabase, TrialState

ENGINE = "optuna"
#: User attributes of a queued copy: the trial it continues, and its lineage (the first try).
RESUME_ATTR = "rnnsearch_resume_of"
LINEAGE_ATTR = "rnnsearch_first_try"


def distributions(space: Space) -> dict[str, tuple[optuna.distributions.BaseDistribution, Any]]:
    """Each searched dimension as (Optuna distribution, condition or None), in space order."""
    out: dict[str, tuple[optuna.distributions.BaseDistribution, Any]] = {}
    for dim in space.searched:
        if isinstance(dim, IntRange):
            dist: optuna.distributions.BaseDistribution = optuna.distributions.IntDistribution(
                dim.low, dim.high, log=dim.log, step=dim.step
            )
        elif isinstance(dim, FloatRange):
            dist = optuna.distributions.FloatDistribution(
                dim.low, dim.high, log=dim.log, step=dim.step
            )
        elif isinstance(dim, Choice):
            dist = optuna.distributions.CategoricalDistribution(list(dim.values))
        else:  # pragma: no cover - Fixed is not searched
            continue
        out[dim.name] = (dist, dim.when)
    return out


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Sample every active searched dimension; conditions see values sampled before them."""
    sampled: dict[str, Any] = {}
    for dim in space.dimensions:
        if not space.is_active(dim, sampled):
            continue
        if isinstance(dim, Fixed):
            sampled[dim.name] = dim.value
        elif isinstance(dim, IntRange):
            sampled[dim.name] = trial.suggest_int(
                dim.name, dim.low, dim.high, step=dim.step, log=dim.log
            )
        elif isinstance(dim, FloatRange):
            if dim.step is not None:
                sampled[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, step=dim.step)
            else:
                sampled[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Choice):
            sampled[dim.name] = trial.suggest_categorical(dim.name, list(dim.values))
    return {d.name: sampled[d.name] for d in space.searched if d.name in sampled}


def make_sampler(
    seed: int | None, n_startup_trials: int = 5, kind: str = "tpe"
) -> optuna.samplers.BaseSampler:
    if kind == "nsga2":
        # Optuna's default population (50) is more than a whole 20-minute budget of random
        # trials on IMDB; 10 lets the genetic search start within it.
        return optuna.samplers.NSGAIISampler(population_size=10, seed=seed)
    # group=True lets multivariate TPE model conditional dimensions (merge_mode, activation);
    # the same sampler handles several objectives (Optuna's MOTPE).
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, multivariate=True, group=True
    )


def worker_seed_offset() -> int:
    """What a worker adds to the study's seed so that workers starting together do not draw the
    same random samples (TPE's start-up trials are random: with one seed, two workers ran the
    same configurations). The N workers of `run --workers N` are numbered, and stay
    reproducible per number; a worker started by hand adds its process id."""
    from search.progress import WORKER_INDEX_VAR

    index = os.environ.get(WORKER_INDEX_VAR)
    return 7919 * int(index) if index and index.isdigit() else os.getpid()


class OptunaEngine:
    """TPE sampling and median pruning over one study, for one worker process."""

    name = ENGINE
    drops_checkpoints_during_search = True

    def __init__(self, db: StudyDatabase, plan: StudyPlan, study: optuna.Study, study_id: int):
        self.db = db
        self.plan = plan
        self.study = study
        self.study_id = study_id
        self._live: dict[int, optuna.Trial] = {}

    @classmethod
    def open(cls, db: StudyDatabase, plan: StudyPlan) -> OptunaEngine:
        # Optuna logs every failed or interrupted trial with a traceback; rnnsearch reports
        # trials itself (progress, `trials --state failed` with the reason).
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        # rnnsearch's runner keeps the heartbeat itself (search.trials.heartbeat) around ask/tell.
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
        existing = len(db.trials(plan.study)) if plan.existing else 0
        # Offsetting the seed by the trials already run keeps a resumed sampler from replaying
        # the first run's random start-up samples; an uninterrupted run stays reproducible.
        sampler = make_sampler(
            (plan.seed + existing + (worker_seed_offset() if plan.join_only else 0)) % 2**32,
            n_startup_trials=min(10, max(3, plan.target // 4)),
            kind=plan.sampler,
        )
        study = optuna.create_study(
            study_name=plan.study,
            storage=db.optuna_storage,
            directions=directions(plan.objectives),
            sampler=sampler,
            # Optuna prunes single-objective studies only; --patience ends trials otherwise.
            pruner=optuna.pruners.NopPruner() if plan.multi_objective else make_pruner(plan.pruner),
            load_if_exists=True,
        )
        return cls(db, plan, study, db.study_id(plan.study))

    def new_study(self) -> None:
        """The space's known-good configurations run first and seed TPE's model."""
        for point in self.plan.space.start_points():
            self.study.enqueue_trial(point, user_attrs={"rnnsearch_start_point": True})

    def budget_left(self) -> bool:
        budget = self.plan.time_budget
        if not budget:
            return True
        return self.db.spent_seconds(self.plan.study) < float(budget)

    def next_trial(self) -> TrialOrder | None:
        if not self.budget_left() or not self.db.claim_trial_slot(self.study_id):
            return None
        trial = self.study.ask()
        self._live[trial.number] = trial
        sampled = suggest(trial, self.plan.space)
        config = self.plan.space.resolve(
            sampled, max_epochs=self.plan.max_epochs, token_input=self.plan.token_input
        )
        resume_of = trial.user_attrs.get(RESUME_ATTR)
        return TrialOrder(
            number=trial.number,
            trial_id=self.db.optuna_storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number
            ),
            config=config,
            epochs=int(config["epochs"]),
            lineage=int(trial.user_attrs.get(LINEAGE_ATTR, trial.number)),
            continues=int(resume_of) if resume_of is not None else None,
        )

    def epoch_done(self, order: TrialOrder, epoch: int, metrics: dict[str, float]) -> bool:
        if self.plan.multi_objective:
            return False  # Trial.report is for single-objective studies only
        trial = self._live[order.number]
        trial.report(metrics["val_accuracy"], epoch)
        return trial.should_prune()

    def trial_finished(self, order: TrialOrder, outcome: TrialOutcome) -> None:
        trial = self._live.pop(order.number)
        if outcome.state is TrialState.COMPLETE and self.plan.multi_objective:
            values = [outcome.figures.get(name) for name in self.plan.objectives]
            if any(v is None for v in values):
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(trial, values)
        elif outcome.state is TrialState.COMPLETE:
            self.study.tell(trial, outcome.value)
        elif outcome.state is TrialState.PRUNED:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def trial_cut(self, cut: CutTrial, reason: str) -> None:
        """Queue a copy with the same parameters in the same lineage; give its slot back."""
        trial = self._live.pop(cut.number, None)
        if trial is not None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        params = cut.params or dict(self.db.optuna_storage.get_trial(cut.trial_id).params)
        self.db.release_trial_slot(self.study_id)
        self.study.enqueue_trial(
            params,
            user_attrs={RESUME_ATTR: cut.number, LINEAGE_ATTR: cut.lineage},
            skip_if_exists=False,
        )
