"""What a trial can be judged on, and the Pareto front of several such objectives.

Pure Python (no TensorFlow, no Optuna): ``run --objectives`` checks its names here, the engine
asks each objective's direction, and ``best --pareto`` / ``report`` find the non-dominated trials.

Every objective is a figure the runner records for every trial that trained (``search.trials``):

====================  =========  ============================================================
name                  direction  figure
====================  =========  ============================================================
``val_accuracy``      maximize   best validation accuracy over the trial's epochs
``val_loss``          minimize   lowest validation loss over the trial's epochs
``latency_ms``        minimize   median milliseconds to predict one batch of 256 validation
                                 examples, on the machine that trained it (after a warm-up)
``params``            minimize   the model's parameter count
``model_mb``          minimize   size of the saved ``.keras`` file, in MB (10^6 bytes)
====================  =========  ============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.errors import UsageError

if TYPE_CHECKING:
    from storage import StudyDatabase, TrialRecord


@dataclass(frozen=True)
class Objective:
    name: str
    maximize: bool
    description: str

    @property
    def direction(self) -> str:
        """Optuna's word for it."""
        return "maximize" if self.maximize else "minimize"


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("val_accuracy", True, "best validation accuracy over the trial's epochs"),
        Objective("val_loss", False, "lowest validation loss over the trial's epochs"),
        Objective("latency_ms", False, "median ms to predict a batch of 256 validation examples"),
        Objective("params", False, "parameter count"),
        Objective("model_mb", False, "saved .keras file size, MB"),
    )
}
#: A study without ``--objectives``: the single objective rnnsearch always had.
DEFAULT_OBJECTIVES: tuple[str, ...] = ("val_accuracy",)


def parse_objectives(text: str | Sequence[str], option: str = "--objectives") -> tuple[str, ...]:
    """``"val_accuracy,latency_ms"`` (or a sequence of names) as checked names, in order."""
    raw = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(n.strip() for n in raw)
    shown = text if isinstance(text, str) else ",".join(names)
    known = ", ".join(OBJECTIVES)
    if not names or any(not n for n in names):
        raise UsageError(f"{option} {shown!r}: expected comma-separated names from {known}")
    for n in names:
        if n not in OBJECTIVES:
            raise UsageError(
                f"{option} {shown}: unknown objective {n!r}; expected names from {known}"
            )
    if len(set(names)) != len(names):
        raise UsageError(f"{option} {shown}: an objective is named twice")
    return names


def directions(names: Sequence[str]) -> list[str]:
    return [OBJECTIVES[n].direction for n in names]


def trial_figure(trial: Any, name: str) -> float | None:
    """A trial record's figure for objective ``name`` (None: not measured for this trial).

    Trials recorded before rnnsearch stored per-trial figures have only their objective value;
    in a single-objective study that value is the best validation accuracy.
    """
    if name == "val_accuracy":
        if trial.val_accuracy is not None:
            return float(trial.val_accuracy)
        values = trial.values
        if trial.value is not None and (values is None or len(values) <= 1):
            return float(trial.value)
        return None
    if name == "params":
        return None if trial.param_count is None else float(trial.param_count)
    value = getattr(trial, name)
    return None if value is None else float(value)


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """True when ``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for x, y, up in zip(a, b, maximize, strict=True):
        if (x < y) if up else (x > y):
            return False
        if x != y:
            better = True
    return better


def pareto_front(points: Mapping[int, Sequence[float]], names: Sequence[str]) -> list[int]:
    """The keys of ``points`` that no other point dominates (objective vectors in ``names``
    order), in key order. Equal vectors do not dominate each other: both stay on the front."""
    maximize = [OBJECTIVES[n].maximize for n in names]
    items = sorted(points.items())
    return [k for k, p in items if not any(dominates(q, p, maximize) for j, q in items if j != k)]


def hypervolume_2d(
    points: Sequence[Sequence[float]], names: Sequence[str], reference: Sequence[float]
) -> float:
    """The area two objectives' points dominate up to ``reference`` (bigger is a better front).

    Each objective is turned into one to minimise first; points worse than the reference in
    any objective add nothing.
    """
    if len(names) != 2:
        raise ValueError("hypervolume_2d takes exactly two objectives")
    sign = [-1.0 if OBJECTIVES[n].maximize else 1.0 for n in names]
    ref = [reference[0] * sign[0], reference[1] * sign[1]]
    pts = sorted(
        (p[0] * sign[0], p[1] * sign[1])
        for p in points
        if p[0] * sign[0] < ref[0] and p[1] * sign[1] < ref[1]
    )
    area, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def study_objectives(db: StudyDatabase, study: str) -> tuple[str, ...]:
    """The objectives a study was run with (val_accuracy alone for single-objective ones)."""
    config = db.study_config(study)
    stored = (config.options.get("objectives") if config is not None else None) or ()
    return tuple(stored) or DEFAULT_OBJECTIVES


def pareto_trials(
    db: StudyDatabase,
    study: str,
    names: Sequence[str] | None = None,
    predicate: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[tuple[str, ...], list[TrialRecord]]:
    """The study's non-dominated complete trials in ``names`` (default: the study's own
    objectives), best first in the first objective; and the objectives used.

    Only complete trials compete (as in Optuna's ``Study.best_trials``): a pruned one stopped
    before its configuration showed what it can do. Trials without every figure (recorded
    before rnnsearch measured them) are left out; none with them all is a usage error.
    """
    used = tuple(names) if names else study_objectives(db, study)
    complete = db.trials(study, ["complete"])
    if predicate is not None:
        complete = [t for t in complete if predicate(t.config or t.params)]
    points: dict[int, list[float]] = {}
    for t in complete:
        figures = [trial_figure(t, n) for n in used]
        if all(f is not None for f in figures):
            points[t.number] = [float(f) for f in figures if f is not None]
    if complete and not points:
        raise UsageError(
            f"study {study!r}: no complete trial has {', '.join(used)} recorded (trials run "
            "before rnnsearch measured them have only their objective value)"
        )
    front = set(pareto_front(points, used))
    first = OBJECTIVES[used[0]]
    rows = [t for t in complete if t.number in front]
    rows.sort(key=lambda t: -points[t.number][0] if first.maximize else points[t.number][0])
    return used, rows


def front_rows(trials: Sequence[TrialRecord], names: Sequence[str]) -> list[dict[str, Any]]:
    """Front trials as JSON-ready rows: ``values`` in ``names`` order and each objective by
    name. ``params`` is the parameter count (an objective name); the sampled hyperparameters
    are under ``hyperparameters``."""
    out = []
    for rank, t in enumerate(trials, start=1):
        values: list[float | int | None] = [trial_figure(t, n) for n in names]
        # A parameter count reads as the integer it is.
        values = [
            int(v) if n == "params" and v is not None else v
            for n, v in zip(names, values, strict=True)
        ]
        row = {"rank": rank, "number": t.number, "state": t.state, "values": values}
        row.update(zip(names, values, strict=True))
        row.setdefault("params", t.param_count)
        for key in ("val_accuracy", "val_loss", "latency_ms", "latency_single_ms", "model_mb"):
            row.setdefault(key, getattr(t, key))
        row.update(
            {
                "epochs": t.epochs,
                "duration_s": t.duration_s,
                "hyperparameters": dict(t.params),
                "config": dict(t.config),
                "test_accuracy": t.test_accuracy,
            }
        )
        out.append(row)
    return out
