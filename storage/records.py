"""Frozen records returned by the storage layer: never ORM rows, never Optuna objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class TrialState(str, Enum):
    """A trial's state as rnnsearch reports it. Optuna's FAIL splits into failed and interrupted.

    A member is a ``str`` equal to its value (``TrialState.COMPLETE == "complete"``) and prints as
    its value, so records keep plain strings in ``state`` and compare with members directly.
    """

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    WAITING = "waiting"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def finished(cls) -> frozenset[TrialState]:
        """The states a trial ends in for good: it counts towards a study's target."""
        return FINISHED_STATES

    @classmethod
    def scored(cls) -> frozenset[TrialState]:
        """The states of trials that trained and have a validation accuracy."""
        return SCORED_STATES


#: Every state's value, in the order the CLI lists them (``--state`` choices).
TRIAL_STATES: tuple[str, ...] = tuple(s.value for s in TrialState)
#: Trials that ended for good: they count towards a study's target number of trials.
FINISHED_STATES: frozenset[TrialState] = frozenset(
    {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED}
)
#: Trials that trained and have a validation accuracy (what reports compare and retrain picks).
SCORED_STATES: frozenset[TrialState] = frozenset({TrialState.COMPLETE, TrialState.PRUNED})


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float | None


@dataclass(frozen=True)
class StudyConfig:
    """What a study was started with; stored once, read on resume."""

    name: str
    study_id: int
    engine: str
    space_name: str
    space_json: str
    data: dict[str, Any]
    seed: int | None
    target_trials: int | None
    options: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    #: The study's identity, issued by the database once (None: assigned when first saved).
    uid: str | None = None


@dataclass(frozen=True)
class TrialRecord:
    study: str
    number: int
    trial_id: int
    state: str
    value: float | None
    params: dict[str, Any]
    config: dict[str, Any]
    epochs: int
    duration_s: float | None
    started_at: datetime | None
    finished_at: datetime | None
    engine: str | None = None
    reason: str | None = None
    data_fingerprint: str | None = None
    param_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    test_loss: float | None = None
    test_accuracy: float | None = None
    #: Every objective value of a multi-objective trial, in the study's objective order (None:
    #: none recorded); ``value`` is the first.
    values: tuple[float, ...] | None = None
    #: Figures the runner measures once a trial has trained (search.objectives, search.measure).
    val_accuracy: float | None = None
    val_loss: float | None = None
    latency_ms: float | None = None
    latency_single_ms: float | None = None
    model_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("started_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass(frozen=True)
class StudyRecord:
    name: str
    study_id: int
    engine: str | None
    space: str | None
    data: str | None
    direction: str
    counts: dict[str, int]
    best_value: float | None
    target_trials: int | None
    created_at: datetime | None
    #: The training slice (--limit) and seed the study was started with.
    limit: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass(frozen=True)
class ArtefactRecord:
    """A file or folder rnnsearch created for a study (checkpoints, a Keras Tuner project)."""

    id: int
    study_uid: str
    kind: str
    path: str
    trial_id: int | None = None
    lineage: int | None = None
