"""The Hyperband engine: Keras Tuner's Hyperband oracle decides, rnnsearch's runner runs.

Keras Tuner's ``HyperbandOracle`` decides which configurations to train and for how many epochs
(its state lives in the study's ``keras-tuner`` folder, so brackets continue after a restart).
:class:`HyperbandEngine` asks it for trials and tells it their results; the trials themselves run
through :class:`search.trials.TrialRunner`, exactly like the Optuna engine's: per-epoch
checkpoints, the same rows (parameters, per-epoch metrics, objective, wall time, data fingerprint,
library versions) in the study's Optuna study, so `best`, `trials`, `optuna trials` and
optuna-dashboard read Hyperband studies like any other.

A warm-started trial (successive halving: continue an earlier trial's best weights for more
epochs) records the earlier trial's epochs as its own first epochs, so its learning curve and
epoch count describe the model it produced; ``extra`` names the trial it continued, the bracket,
the round and the epoch range it trained itself. A trial that was cut is offered again by the
oracle (Keras Tuner's retry queue); rnnsearch continues it from its lineage's newest checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search import tfenv

# Keras Tuner imports TensorFlow (through TensorBoard) whatever the backend: quietly, first.
tfenv.quiet_import(tensorflow_needed=True)

import keras_tuner as kt  # noqa: E402
import optuna  # noqa: E402

from search.engines import kt_space, optuna_engine  # noqa: E402
from search.errors import SearchError  # noqa: E402
from search.plan import StudyPlan, schedule_trials  # noqa: E402
from search.trials import CutTrial, TrialOrder, TrialOutcome  # noqa: E402
from storage import StudyDatabase, TrialRecord, TrialState  # noqa: E402

ENGINE = "hyperband"
KT_TRIAL_ATTR = "kt_trial_id"
#: The one tuner id rnnsearch's single Hyperband worker uses with the oracle.
TUNER_ID = "rnnsearch"

__all__ = ["HyperbandEngine", "schedule_trials"]


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


class HyperbandEngine:
    """Keras Tuner's Hyperband oracle over one study, for its one worker process."""

    name = ENGINE
    # Warm starts read earlier trials' best weights until the schedule ends.
    drops_checkpoints_during_search = False

    def __init__(
        self, db: StudyDatabase, plan: StudyPlan, study: optuna.Study, study_id: int, kt_dir: Path
    ) -> None:
        self.db = db
        self.plan = plan
        self.study = study
        self.study_id = study_id
        self.kt_dir = kt_dir
        assert plan.hyperband is not None, "a Hyperband plan has Hyperband settings"
        schedule = plan.hyperband
        self.distributions = {
            name: dist for name, (dist, _) in optuna_engine.distributions(plan.space).items()
        }
        self.oracle = kt.oracles.HyperbandOracle(
            objective=kt.Objective("val_accuracy", direction="max"),
            max_epochs=plan.max_epochs,
            factor=schedule.factor,
            hyperband_iterations=schedule.iterations,
            seed=plan.seed,
            hyperparameters=kt_space.hyperparameters(plan.space),
            tune_new_entries=False,
            allow_new_entries=False,
            max_consecutive_failed_trials=5,
        )
        self.oracle.verbose = 0
        self.oracle._set_project_dir(str(kt_dir.parent), kt_dir.name)
        if (kt_dir / "oracle.json").exists():
            for path in repair_kt_state(kt_dir):
                print(
                    f"rnnsearch: {path} was torn; restored its last good version", file=sys.stderr
                )
            self.oracle.reload()
        # Not part of Keras Tuner's saved state: set on every start, counting all trials so far.
        self.oracle.max_trials = schedule.max_trials
        self._live: dict[int, tuple[optuna.Trial, Any]] = {}

    @staticmethod
    def create_study(db: StudyDatabase, plan: StudyPlan) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # rnnsearch's runner keeps the heartbeat itself (search.trials.heartbeat) around ask/tell.
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
        return optuna.create_study(
            study_name=plan.study,
            storage=db.optuna_storage,
            direction="maximize",
            # Keras Tuner chooses every value; the sampler only sees fixed, enqueued parameters.
            sampler=optuna.samplers.RandomSampler(seed=plan.seed),
            load_if_exists=True,
        )

    def _recorded(self, kt_trial_id: str, state: str) -> list[TrialRecord]:
        return [
            t
            for t in self.db.trials(self.plan.study, [state])
            if t.extra.get(KT_TRIAL_ATTR) == kt_trial_id
        ]

    def next_trial(self) -> TrialOrder | None:
        # Keras Tuner prints ("Search: Running Trial...") to stdout, which is ours (--format json).
        with contextlib.redirect_stdout(sys.stderr):
            kt_trial = self.oracle.create_trial(TUNER_ID)
        if kt_trial.status != kt.engine.trial.TrialStatus.RUNNING:
            return None  # STOPPED: the schedule (or --trials) is done
        values = kt_trial.hyperparameters.values
        sampled = kt_space.sampled_values(self.plan.space, values)
        config = self.plan.space.resolve(
            sampled, max_epochs=self.plan.max_epochs, token_input=self.plan.token_input
        )
        epochs = int(values.get("tuner/epochs", config["epochs"]))
        config["epochs"] = epochs
        initial_epoch = int(values.get("tuner/initial_epoch", 0))
        self.study.enqueue_trial(
            sampled, user_attrs={KT_TRIAL_ATTR: kt_trial.trial_id}, skip_if_exists=False
        )
        trial = self.study.ask(fixed_distributions={n: self.distributions[n] for n in sampled})
        self._live[trial.number] = (trial, kt_trial)
        extra: dict[str, Any] = {
            KT_TRIAL_ATTR: kt_trial.trial_id,
            "bracket": int(values.get("tuner/bracket", 0)),
            "round": int(values.get("tuner/round", 0)),
            "initial_epoch": initial_epoch,
            "final_epoch": epochs,
        }
        # The oracle offers a cut trial again: its lineage continues from its checkpoint.
        cut = [
            t
            for t in self._recorded(kt_trial.trial_id, TrialState.INTERRUPTED.value)
            if t.number < trial.number
        ]
        continues = cut[-1] if cut else None
        parent = None
        if "tuner/trial_id" in values:
            found = self._recorded(str(values["tuner/trial_id"]), TrialState.COMPLETE.value)
            parent = found[-1] if found else None
            extra["warm_start_of_kt_trial"] = str(values["tuner/trial_id"])
            if parent is not None:
                extra["warm_start_of"] = parent.number
                extra["warm_start_weights_epoch"] = parent.extra.get("best_epoch")
        return TrialOrder(
            number=trial.number,
            trial_id=self.db.optuna_storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number
            ),
            config=config,
            epochs=epochs,
            lineage=int(continues.extra.get("lineage", continues.number))
            if continues is not None
            else trial.number,
            continues=continues.number if continues is not None else None,
            warm_start_lineage=(
                int(parent.extra.get("lineage", parent.number)) if parent is not None else None
            ),
            inherits_from=parent,
            initial_epoch=initial_epoch if parent is not None else 0,
            keep_best_weights=True,
            extra=extra,
        )

    def epoch_done(self, order: TrialOrder, epoch: int, metrics: dict[str, float]) -> bool:
        trial, _ = self._live[order.number]
        trial.report(metrics["val_accuracy"], epoch)
        return False  # Hyperband ends trials through its schedule, not by pruning

    def trial_finished(self, order: TrialOrder, outcome: TrialOutcome) -> None:
        trial, kt_trial = self._live.pop(order.number)
        status = kt.engine.trial.TrialStatus
        # Keras Tuner's objective: the best val_accuracy over the epochs the trial trained itself
        # (a warm start's inherited epochs are its parent's).
        own = [v for v in outcome.val_accuracy[order.initial_epoch :] if v is not None]
        if outcome.state is TrialState.COMPLETE and own:
            kt_trial.status = status.COMPLETED
            self.oracle.update_trial(kt_trial.trial_id, {"val_accuracy": max(own)})
            self.study.tell(trial, max(own))
        else:
            kt_trial.status = status.FAILED
            kt_trial.message = outcome.reason or "failed"
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                self.oracle.end_trial(kt_trial)
                # end_trial saves before it lets go of the ongoing trial (Keras Tuner's tuner
                # saves again afterwards): without this a restart would run it once more.
                self.oracle.save()
        except RuntimeError as exc:  # Keras Tuner's limit of consecutive failed trials
            raise SearchError(
                f"Keras Tuner stopped the search: {str(exc).splitlines()[0]}"
            ) from exc

    def trial_cut(self, cut: CutTrial, reason: str) -> None:
        # Keras Tuner offers its cut trial again on the next start (its retry queue).
        live = self._live.pop(cut.number, None)
        if live is not None:
            self.study.tell(live[0], state=optuna.trial.TrialState.FAIL)
