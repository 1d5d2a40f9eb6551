"""A run's options, resolved once: the request meets the stored study here and nowhere else.

:func:`resolve_plan` turns a :class:`RunRequest` (what the user asked for; None means "the
study's stored value, or the default") and the stored :class:`~storage.StudyConfig` (None for a
new study) into one typed :class:`StudyPlan`, refusing conflicts with one line. It reads no data
and writes nothing; everything after it takes the plan.
"""

from __future__ import annotations

import math
import os
import secrets
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.backend import check_backend, default_backend
from search.errors import UsageError
from search.objectives import DEFAULT_OBJECTIVES
from spaces import Space, load_space
from spaces.fit import is_template_of
from spaces.space import Choice, FloatRange, IntRange
from storage import StudyConfig

ENGINES = ("optuna", "hyperband")
DEFAULT_SPACE = "default"
DEFAULT_DATA = "imdb"
DEFAULT_TRIALS = 20
DEFAULT_MAX_EPOCHS = 5
#: Completed trials whose final checkpoint is kept (for retrain and `model`): the best ones.
DEFAULT_KEEP_CHECKPOINTS = 3
DEFAULT_FACTOR = 3
DEFAULT_ITERATIONS = 1
#: Optuna's pruners a study may use (built by search.engines.optuna_engine.make_pruner); the
#: default was chosen by measurement (bench/pruners.py, docs/default-space.md).
PRUNERS = ("median", "median-warmup", "patient", "halving", "none")
DEFAULT_PRUNER = "median-warmup"
#: Studies from before the pruner was stored ran the plain median rule, and keep it.
LEGACY_PRUNER = "median"


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
    #: Where the study's artefacts live (stored with the study; a folder workers share).
    checkpoint_dir: str | None = None
    #: >1: run this many worker processes on the study (`run --workers N`).
    workers: int | None = None
    #: A worker joining a running study: it neither changes the target nor recounts slots.
    join_only: bool = False
    #: Data options: columns of a text/long CSV or JSONL file, and bucketing by length.
    text_col: str | None = None
    label_col: str | None = None
    split_col: str | None = None
    bucketing: bool | None = None
    #: Hyperband: reduction factor and iterations (None: the study's stored value or default).
    hyperband_factor: int | None = None
    hyperband_iterations: int | None = None
    #: What trials are judged on: comma-separated names of search.objectives (None: the
    #: study's, else val_accuracy alone); two or more make a multi-objective study.
    objectives: str | None = None
    #: Optuna's sampler: "tpe" or "nsga2" (None: the study's, else DEFAULT_SAMPLER).
    sampler: str | None = None
    #: Keras backend (``search.backend``) and compiled training steps (None: stored/default).
    backend: str | None = None
    jit_compile: bool | None = None
    #: Optuna engine: which pruner ends weak trials (one of PRUNERS; None: stored or default).
    pruner: str | None = None
    #: Per-trial TensorBoard logs under this folder (this run only; not stored with the study).
    tensorboard: str | None = None


SAMPLERS = ("tpe", "nsga2")
#: TPE: it models the objectives after a few start-up trials and handles conditional
#: dimensions; bench/pareto.py's short contended runs did not separate it from NSGA-II
#: (docs/multi-objective.md).
DEFAULT_SAMPLER = "tpe"


@dataclass(frozen=True)
class HyperbandSchedule:
    """Hyperband's settings of a run: reduction factor, iterations, the schedule's trial count,
    the cap on Keras Tuner's trials (None: the schedule decides) and the resulting target."""

    factor: int
    iterations: int
    schedule: int
    max_trials: int | None
    target: int


@dataclass(frozen=True)
class StudyPlan:
    """Everything a run needs to know, resolved from the request and the stored study."""

    study: str
    engine: str
    space: Space
    data: str
    limit: int | None
    data_options: dict[str, Any]
    seed: int
    max_epochs: int
    #: Finished trials the study should hold when this run ends.
    target: int
    existing: bool
    patience: int | None
    time_budget: float | None
    keep_checkpoints: int
    checkpoint_dir: str | None
    workers: int
    join_only: bool
    #: The Keras backend that trains this run's models and whether training steps are compiled
    #: (XLA under TensorFlow; JAX always compiles).
    backend: str = "tensorflow"
    #: None: the default (``search.model.wants_jit``: off under TensorFlow).
    jit_compile: bool | None = None
    #: Hyperband's settings (None for the Optuna engine).
    hyperband: HyperbandSchedule | None = None
    #: The stored study (None for a new one).
    stored: StudyConfig | None = None
    #: What trials are judged on (search.objectives), in order; two or more: multi-objective.
    objectives: tuple[str, ...] = ("val_accuracy",)
    sampler: str = DEFAULT_SAMPLER

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    #: Optuna engine: the pruner's name (one of PRUNERS).
    pruner: str = DEFAULT_PRUNER
    #: A space fitted to the data (spaces.fit): the template and statistics it was fitted from.
    space_fit: dict[str, Any] | None = None
    #: TensorBoard logs of this run's trials go to <tensorboard_dir>/<study>/trial-NNNN.
    tensorboard_dir: str | None = None
    #: The data is token ids (text); False for numeric sequences, whose trials' configurations
    #: carry no vocabulary or embedding (set once the data is read: search.service).
    token_input: bool = True
    #: An existing study's stored settings this run replaces, one line each (the run says so).
    changed: tuple[str, ...] = ()

    @property
    def uid(self) -> str | None:
        return self.stored.uid if self.stored is not None else None

    def options(self) -> dict[str, Any]:
        """What is stored with the study (merged over what it stored before)."""
        out = dict(self.stored.options) if self.stored is not None else {}
        out.update(
            {
                "max_epochs": self.max_epochs,
                "patience": self.patience,
                "keep_checkpoints": self.keep_checkpoints,
                "time_budget_s": self.time_budget,
                "checkpoint_dir": self.checkpoint_dir,
                "backend": self.backend,
                "jit_compile": self.jit_compile,
            }
        )
        if self.hyperband is not None:
            out.update(
                {
                    "schedule_trials": self.hyperband.schedule,
                    "factor": self.hyperband.factor,
                    "hyperband_iterations": self.hyperband.iterations,
                    "kt_max_trials": self.hyperband.max_trials,
                }
            )
        elif self.multi_objective:
            # Optuna prunes single-objective studies only; --patience ends trials here.
            out.update(
                {
                    "sampler": SAMPLER_TEXT[self.sampler],
                    "sampler_name": self.sampler,
                    "pruner": "none (multi-objective)",
                }
            )
        else:
            from search.engines.pruners import pruner_description

            out.update(
                {
                    "sampler": SAMPLER_TEXT[self.sampler],
                    "sampler_name": self.sampler,
                    "pruner": self.pruner,
                    "pruner_rule": pruner_description(self.pruner),
                }
            )
        out["objectives"] = list(self.objectives)
        if self.space_fit is not None:
            out["space_fit"] = self.space_fit
        else:  # a changed space (--allow-space-change) was not fitted from that template
            out.pop("space_fit", None)
        return out


SAMPLER_TEXT = {
    "tpe": "TPESampler(multivariate, group)",
    "nsga2": "NSGAIISampler(population_size=10)",
}


def schedule_trials(max_epochs: int, factor: int, iterations: int) -> int:
    """How many trials Hyperband's schedule runs (Keras Tuner's bracket and round sizes)."""
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


def check_request(req: RunRequest) -> None:
    """Refuse option values that are wrong whatever the study (before anything is opened); the
    one place the CLI and the Python API check a run's values."""
    from search.validation import check_count, check_seed, check_study_name

    check_study_name(req.study, "STUDY" if req.resume_only else "--study")
    check_seed(req.seed)
    for option, value in (
        ("--trials", req.trials),
        ("--add", req.add),
        ("--limit", req.limit),
        ("--max-epochs", req.max_epochs),
        ("--workers", req.workers),
        ("--factor", req.hyperband_factor),
        ("--hyperband-iterations", req.hyperband_iterations),
    ):
        check_count(option, value)
    if req.trials is not None and req.add is not None:
        raise UsageError("--trials and --add: give one of them, not both")
    check_count("--patience", req.patience, zero_means="off")
    check_count("--keep-checkpoints", req.keep_checkpoints, zero_means="keep none")
    if req.objectives is not None:
        from search.objectives import parse_objectives

        if len(parse_objectives(req.objectives)) > 1 and req.pruner not in (None, "none"):
            raise UsageError(
                f"--pruner {req.pruner}: Optuna does not prune multi-objective studies "
                f"(--objectives {req.objectives}); use --patience to end trials early"
            )
    if req.sampler is not None and req.sampler not in SAMPLERS:
        raise UsageError(f"--sampler {req.sampler}: expected one of {', '.join(SAMPLERS)}")
    check_backend(req.backend)
    if req.engine is not None and req.engine not in ENGINES:
        raise UsageError(f"--engine {req.engine}: expected one of {', '.join(ENGINES)}")
    if req.pruner is not None and req.pruner not in PRUNERS:
        raise UsageError(f"--pruner {req.pruner}: expected one of {', '.join(PRUNERS)}")
    check_folder("--checkpoint-dir", req.checkpoint_dir, "the study's checkpoints and models")
    check_folder("--tensorboard", req.tensorboard, "TensorBoard logs")
    if req.time_budget is not None and not (math.isfinite(req.time_budget) and req.time_budget > 0):
        raise UsageError(f"--time-budget {req.time_budget}: expected a finite positive duration")


def check_folder(option: str, folder: str | None, holds: str) -> None:
    """Refuse a folder a run cannot write to, before anything is created: an empty name, an
    existing file, or a missing folder whose nearest existing parent is not a writable folder
    (missing folders are created, parents included, when the run needs them)."""
    if folder is None:
        return
    if not folder.strip():
        raise UsageError(f"{option}: expected a folder for {holds}, got an empty name")
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {folder}: expected a folder for {holds}, got an existing file")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {folder}: {parent} is a file, not a folder")
    try:  # a probe, removed at once: permission bits say nothing to root or on /proc
        os.rmdir(tempfile.mkdtemp(prefix=".rnnsearch-probe-", dir=parent))
    except OSError as exc:
        raise UsageError(
            f"{option} {folder}: cannot create folders in {parent} ({exc.strerror}); expected a "
            f"writable folder for {holds}"
        ) from None


def _check_engine_options(req: RunRequest, engine: str) -> None:
    """Refuse options the study's engine cannot honour."""
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
        if req.objectives is not None and req.objectives.strip() != "val_accuracy":
            raise UsageError(
                f"--objectives {req.objectives}: not supported by --engine hyperband (Keras "
                "Tuner's Hyperband ranks trials on one objective, val_accuracy); use --engine "
                "optuna"
            )
        if req.sampler is not None:
            raise UsageError(f"--sampler {req.sampler}: applies to --engine optuna only")
        if req.hyperband_factor is not None and req.hyperband_factor < 2:
            raise UsageError(f"--factor {req.hyperband_factor}: expected an integer >= 2")
        if req.hyperband_iterations is not None and req.hyperband_iterations < 1:
            raise UsageError(
                f"--hyperband-iterations {req.hyperband_iterations}: expected a positive integer"
            )
        if req.pruner is not None:
            raise UsageError(
                f"--pruner {req.pruner}: applies to --engine optuna only (Hyperband's schedule "
                "decides which trials go on)"
            )
    elif req.hyperband_factor is not None or req.hyperband_iterations is not None:
        flag = "--factor" if req.hyperband_factor is not None else "--hyperband-iterations"
        raise UsageError(f"{flag}: applies to --engine hyperband only (this study runs {engine})")


def resolve_plan(
    req: RunRequest,
    stored: StudyConfig | None,
    *,
    exists: bool,
    finished: int,
    trials_so_far: int,
    requested_space: Space | None,
) -> StudyPlan:
    """The plan of a run on a new (``stored`` None, ``exists`` False) or existing study.

    ``finished`` and ``trials_so_far`` count the existing study's finished and recorded trials.
    """
    from search.data import data_options

    check_request(req)
    if exists and stored is None:
        # An empty one may be rnnsearch's own, cut between Optuna's row and rnnsearch's record.
        empty = (
            f", or delete it (it holds no trials): rnnsearch delete {shlex.quote(req.study)} "
            "with the same --storage"
            if trials_so_far == 0
            else ""
        )
        raise UsageError(
            f"study {req.study!r} exists but was not created by rnnsearch; choose another --study "
            f"name{empty}"
        )
    if stored is None:
        if req.resume_only:
            raise UsageError(f"no study named {req.study!r} to resume")
        if req.add is not None:
            raise UsageError(f"--add needs an existing study; {req.study!r} is new (use --trials)")
        engine = req.engine or "optuna"
        _check_engine_options(req, engine)
        space = requested_space or load_space(DEFAULT_SPACE)
        max_epochs = req.max_epochs or DEFAULT_MAX_EPOCHS
        target = req.trials or DEFAULT_TRIALS
        hb = _hyperband(req, {}, max_epochs, trials_so_far) if engine == "hyperband" else None
        return StudyPlan(
            study=req.study,
            engine=engine,
            space=space,
            data=req.data or DEFAULT_DATA,
            limit=req.limit,
            data_options=data_options(req, None),
            seed=req.seed if req.seed is not None else secrets.randbelow(2**31 - 1),
            max_epochs=max_epochs,
            target=hb.target if hb else target,
            existing=False,
            patience=req.patience or None,
            time_budget=req.time_budget,
            keep_checkpoints=(
                req.keep_checkpoints
                if req.keep_checkpoints is not None
                else DEFAULT_KEEP_CHECKPOINTS
            ),
            checkpoint_dir=_absolute(req.checkpoint_dir),
            workers=req.workers or 1,
            join_only=req.join_only,
            backend=_backend(req),
            jit_compile=req.jit_compile,
            hyperband=hb,
            stored=None,
            objectives=_objectives(req.objectives),
            sampler=req.sampler or DEFAULT_SAMPLER,
            pruner=req.pruner or DEFAULT_PRUNER,
            tensorboard_dir=_absolute(req.tensorboard),
        )

    if req.engine is not None and req.engine != stored.engine:
        raise UsageError(
            f"study {req.study!r} was run with --engine {stored.engine}; mixing engines in one "
            f"study is not supported (got --engine {req.engine}; use a new --study name)"
        )
    _check_engine_options(req, stored.engine)
    space = Space.from_json(stored.space_json, source=f"study {req.study!r}")
    space_fit = stored.options.get("space_fit")
    if (
        requested_space is not None
        and requested_space.fingerprint != space.fingerprint
        # the template the stored space was fitted from is the same space
        and not is_template_of(requested_space, space_fit)
    ):
        if not req.allow_space_change:
            raise UsageError(
                f"--space {req.space}: differs from the space study {req.study!r} was started "
                f"with ({stored.space_name}); pass --allow-space-change to continue with the new "
                "space, or omit --space to keep the stored one"
            )
        _check_space_change(space, requested_space, f"--space {req.space}", req.study)
        space, space_fit = requested_space, None
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
    options = stored.options
    checkpoint_dir = options.get("checkpoint_dir")
    if req.checkpoint_dir is not None and _absolute(req.checkpoint_dir) != checkpoint_dir:
        raise UsageError(
            f"--checkpoint-dir {req.checkpoint_dir}: study {req.study!r} keeps its artefacts in "
            f"{checkpoint_dir or 'the default folder'} (omit --checkpoint-dir)"
        )
    check_folder(f"--checkpoint-dir of study {req.study!r}", checkpoint_dir, "its artefacts")
    objectives = tuple(options.get("objectives") or DEFAULT_OBJECTIVES)
    if req.objectives is not None and _objectives(req.objectives) != objectives:
        raise UsageError(
            f"--objectives {req.objectives}: study {req.study!r} was started with --objectives "
            f"{','.join(objectives)}; its trials were judged on those (omit --objectives, or "
            "use a new --study name)"
        )
    sampler = options.get("sampler_name", "tpe")
    if req.sampler is not None and req.sampler != sampler:
        raise UsageError(
            f"--sampler {req.sampler}: study {req.study!r} samples with {sampler} (omit "
            "--sampler, or use a new --study name)"
        )
    stored_target = stored.target_trials or 0
    if req.resume_only:
        if req.add is not None:
            target = stored_target + req.add
        elif req.trials is not None:
            if req.trials < finished:
                raise UsageError(
                    f"--trials {req.trials}: study {req.study!r} has {finished} finished trials "
                    f"already; expected at least {finished} (or --add N for N more)"
                )
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
    max_epochs = req.max_epochs or options.get("max_epochs", DEFAULT_MAX_EPOCHS)
    hb = None
    if stored.engine == "hyperband":
        # Keras Tuner keeps its brackets in its project: the schedule is the study's for good
        for flag, asked, key in (
            ("--max-epochs", max_epochs, "max_epochs"),
            ("--factor", req.hyperband_factor, "factor"),
            ("--hyperband-iterations", req.hyperband_iterations, "hyperband_iterations"),
        ):
            kept = options.get(key)
            if asked is not None and kept is not None and asked != kept:
                raise UsageError(
                    f"{flag} {asked}: study {req.study!r} runs Hyperband with {flag} {kept}; "
                    f"its schedule cannot change (omit {flag})"
                )
        hb = _hyperband(req, options, max_epochs, trials_so_far)
    keep = req.keep_checkpoints
    if keep is None:
        keep = options.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS)
    budget = req.time_budget if req.time_budget is not None else options.get("time_budget_s")
    return StudyPlan(
        study=req.study,
        engine=stored.engine,
        space=space,
        data=stored_data,
        limit=stored.data.get("limit"),
        data_options=data_options(req, stored),
        seed=stored.seed if stored.seed is not None else 0,
        max_epochs=max_epochs,
        target=hb.target if hb else target,
        existing=True,
        # --patience 0 turns early stopping off on a study that had it
        patience=(req.patience if req.patience is not None else options.get("patience")) or None,
        time_budget=budget,
        keep_checkpoints=int(keep),
        checkpoint_dir=checkpoint_dir,
        workers=req.workers or 1,
        join_only=req.join_only,
        backend=_backend(req, options.get("backend")),
        jit_compile=(
            req.jit_compile if req.jit_compile is not None else options.get("jit_compile")
        ),
        hyperband=hb,
        stored=stored,
        objectives=objectives,
        sampler=sampler,
        pruner=req.pruner or _stored_pruner(options),
        space_fit=space_fit,
        tensorboard_dir=_absolute(req.tensorboard),
        changed=changed_settings(req, options, stored.engine),
    )


def _dimension_kind(dim: IntRange | FloatRange | Choice) -> str:
    if isinstance(dim, Choice):
        return f"a choice of {list(dim.values)}"
    kind = "integers" if isinstance(dim, IntRange) else "numbers"
    return f"a {'log-spaced ' if dim.log else ''}range of {kind}"


def _check_space_change(old: Space, new: Space, option: str, study: str) -> None:
    """Refuse a changed space whose searched dimension changes kind (integers, numbers, a
    choice), log spacing or, for a choice, its values: the study's trials drew it otherwise,
    and Optuna keeps one distribution per name within a study (it would fail at the first
    trial, with the new space already stored). Ranges may widen or narrow."""
    before = {dim.name: dim for dim in old.searched}
    for dim in new.searched:
        was = before.get(dim.name)
        if was is None:
            continue
        old_kind, new_kind = _dimension_kind(was), _dimension_kind(dim)
        if old_kind != new_kind:
            raise UsageError(
                f"{option}: dimension {dim.name!r} is {new_kind}, where study {study!r} drew it "
                f"as {old_kind}; a searched dimension keeps its kind, log spacing and choices "
                "within a study (ranges may change; use a new --study name)"
            )


def _backend(req: RunRequest, stored: str | None = None) -> str:
    """The run's backend (the request's, else the default over the study's ``stored`` one);
    --no-jit is refused under JAX, which compiles every step."""
    backend = req.backend or default_backend(stored)
    if req.jit_compile is False and backend == "jax":
        raise UsageError(
            "--no-jit: JAX compiles every training step (jax.jit); the option applies to "
            "--backend tensorflow (omit --no-jit, or pass --backend tensorflow)"
        )
    return backend


def changed_settings(req: RunRequest, options: dict[str, Any], engine: str) -> tuple[str, ...]:
    """The stored settings of a study that this request names with another value: a run may
    change them (a longer --time-budget, another --pruner for the trials to come), and says so.
    """

    def shown(value: Any, unit: str = "") -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if not value:
            return "none"
        return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"

    # (flag, what the request asks (None: not named), what the study stored, unit, whether
    # "not stored" means none rather than unknown)
    asked: list[tuple[str, Any, Any, str, bool]] = [
        ("--patience", req.patience, options.get("patience"), "", True),
        ("--time-budget", req.time_budget, options.get("time_budget_s"), " s", True),
        ("--keep-checkpoints", req.keep_checkpoints, options.get("keep_checkpoints"), "", False),
        ("--backend", req.backend, options.get("backend"), "", False),
        ("--jit", req.jit_compile, options.get("jit_compile"), "", False),
    ]
    if engine != "hyperband":  # Hyperband refuses a changed --max-epochs; it has no pruner
        asked.append(("--max-epochs", req.max_epochs, options.get("max_epochs"), "", False))
        if "pruner" in options:
            asked.append(("--pruner", req.pruner, _stored_pruner(options), "", False))
    lines = []
    for flag, wanted, before, unit, none_if_missing in asked:
        if wanted is None or (before is None and not none_if_missing):
            continue
        if none_if_missing:
            differs = (wanted or None) != (before or None)  # 0 and none both mean off
        else:
            differs = wanted != before
        if differs:
            lines.append(
                f"{flag} {shown(wanted, unit)} replaces the study's stored "
                f"{shown(before, unit)} from this run on"
            )
    return tuple(lines)


def _objectives(text: str | None) -> tuple[str, ...]:
    from search.objectives import parse_objectives

    return parse_objectives(text) if text is not None else DEFAULT_OBJECTIVES


def _stored_pruner(options: dict[str, Any]) -> str:
    """The pruner a study ran with; studies from before it was stored by name ran the median."""
    stored = options.get("pruner")
    return stored if stored in PRUNERS else LEGACY_PRUNER


def _absolute(folder: str | None) -> str | None:
    """A folder as stored with a study: absolute, so resumes and workers elsewhere agree."""
    return str(Path(folder).expanduser().resolve()) if folder else None


def _hyperband(
    req: RunRequest, options: dict[str, Any], max_epochs: int, trials_so_far: int
) -> HyperbandSchedule:
    """Hyperband's settings of a run, from the request over the stored options.

    Without --trials, Hyperband's schedule decides how many trials run. --trials N caps Keras
    Tuner's trials at N in all (resumes included); --add N allows N more than the last cap.
    """
    factor = int(req.hyperband_factor or options.get("factor", DEFAULT_FACTOR))
    iterations = int(
        req.hyperband_iterations or options.get("hyperband_iterations", DEFAULT_ITERATIONS)
    )
    max_trials = options.get("kt_max_trials")
    if req.trials:
        max_trials = int(req.trials)
    elif req.add:
        max_trials = (max_trials or trials_so_far) + int(req.add)
    schedule = schedule_trials(max_epochs, factor, iterations)
    target = min(max_trials, schedule) if max_trials else schedule
    return HyperbandSchedule(factor, iterations, schedule, max_trials, target)
