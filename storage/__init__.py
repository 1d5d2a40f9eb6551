"""The study database: Optuna's RDB storage and rnnsearch's own tables. No TensorFlow here."""

from __future__ import annotations

from storage.database import DEFAULT_URL, ENV_VAR, StudyDatabase, resolve_url
from storage.errors import (
    NotAStudyDatabaseError,
    StorageError,
    StorageURLError,
    StudyNotFoundError,
)
from storage.records import (
    FINISHED_STATES,
    SCORED_STATES,
    TRIAL_STATES,
    ArtefactRecord,
    EpochRecord,
    StudyConfig,
    StudyRecord,
    TrialRecord,
    TrialState,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "FINISHED_STATES",
    "SCORED_STATES",
    "TRIAL_STATES",
    "ArtefactRecord",
    "EpochRecord",
    "NotAStudyDatabaseError",
    "StorageError",
    "StorageURLError",
    "StudyConfig",
    "StudyDatabase",
    "StudyNotFoundError",
    "StudyRecord",
    "TrialRecord",
    "TrialState",
    "resolve_url",
]
