"""``--where`` for a given study: the filter language of :mod:`storage.filters`, checked against
the parameters a trial configuration can hold (every known dimension, plus the parameters of
studies that plain Optuna created)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search.errors import UsageError
from storage import StudyDatabase, TrialRecord
from storage.filters import Filter, FilterError, compile_filter


def parameter_types(
    db: StudyDatabase, study: str, trials: Sequence[TrialRecord] | None = None
) -> tuple[dict[str, type | None], dict[str, tuple[Any, ...]]]:
    """Parameter name -> Python type, and the allowed values of categorical parameters."""
    from spaces.space import KNOWN_DIMENSIONS

    types: dict[str, type | None] = {n: spec.type for n, spec in KNOWN_DIMENSIONS.items()}
    choices: dict[str, tuple[Any, ...]] = {
        n: spec.choices for n, spec in KNOWN_DIMENSIONS.items() if spec.choices
    }
    choices["bidirectional"] = (False, True)
    if db.study_config(study) is None:
        # A study plain Optuna created: its parameters are whatever its trials hold.
        for t in trials if trials is not None else db.trials(study):
            for name, value in {**t.params, **t.config}.items():
                if name not in types:
                    types[name] = type(value) if value is not None else None
    return types, choices


def where_filter(
    db: StudyDatabase, study: str, text: str, trials: Sequence[TrialRecord] | None = None
) -> Filter:
    """The parsed, checked filter, or a UsageError naming the filter and what was expected."""
    try:
        types, choices = parameter_types(db, study, trials)
        return compile_filter(text, types, choices)
    except FilterError as exc:
        raise UsageError(f"--where {text!r}: {exc}") from None
