"""Frozen records returned by the storage layer: never ORM rows, never Optuna objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

#: Trial states as rnnsearch reports them. Optuna's FAIL splits into failed and interrupted.
TRIAL_STATES = ("complete", "pruned", "failed", "running", "interrupted", "waiting")


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
