"""rnnsearch from Python (a notebook, a script): run a search and query it.

Every function takes the same values as the command line and returns frozen records
(:class:`storage.TrialRecord`, :class:`storage.StudyRecord`, :class:`search.service.RunSummary`),
never ORM rows. Bad values raise the packages' own exceptions (:class:`search.errors.SearchError`,
:class:`spaces.SpaceError`, :class:`storage.StorageError`) with the message the CLI prints.

    from search import api

    summary = api.run("imdb-1", data="../shared/data/imdb/imdb.npz", trials=10, limit=5000,
                      max_epochs=3, patience=1)
    top = api.best("imdb-1", top=3)
    curves = api.epochs("imdb-1", top[0].number)

Ctrl-C (the notebook's "interrupt kernel") stops the running trial cleanly: it is recorded as
interrupted with its checkpoint, and ``api.run`` (or ``resume``) continues it later. A second
Ctrl-C raises KeyboardInterrupt at once; unlike the command line it never ends the process, so
the kernel survives.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from search.errors import UsageError
from search.plan import RunRequest
from storage import EpochRecord, StudyDatabase, StudyRecord, TrialRecord

__all__ = ["best", "epochs", "resume", "run", "studies", "trials"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _quiet(fn: _F) -> _F:
    """Optuna's "experimental feature" warnings (heartbeat, TPE's group) are not the caller's
    business; they are silenced for the call only, the notebook's own filters stay."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental feature.*")
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: The options ``run`` takes besides the study (RunRequest's fields a user may give).
RUN_OPTIONS = tuple(
    f.name
    for f in dataclasses.fields(RunRequest)
    if f.name not in ("study", "resume_only", "join_only")
)


def _request(study: str, options: dict[str, Any], *, resume_only: bool) -> RunRequest:
    from search.validation import parse_duration

    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)}: not an option of run; expected any of {', '.join(RUN_OPTIONS)}"
        )
    budget = options.get("time_budget")
    if isinstance(budget, str):  # "20m", as on the command line
        options = {**options, "time_budget": parse_duration(budget)}
    return RunRequest(study=study, resume_only=resume_only, **options)


@_quiet
def run(study: str, *, progress: str = "auto", **options: Any) -> Any:
    """Create or continue ``study`` and run trials until it holds its target; its summary.

    ``options`` are ``run``'s options with underscores (``storage``, ``space``, ``engine``,
    ``trials``, ``add``, ``data``, ``limit``, ``max_epochs``, ``patience``, ``seed``,
    ``time_budget`` as seconds or ``"20m"``, ``workers``, ``tensorboard``, ...; see
    ``RUN_OPTIONS``). ``progress``: ``auto`` (a live display in a terminal, else one line per
    epoch and per trial on stderr, as in a notebook), ``bar``, ``log`` or ``off``.
    """
    return _run(_request(study, options, resume_only=False), progress)


@_quiet
def resume(
    study: str,
    *,
    trials: int | None = None,
    add: int | None = None,
    storage: str | None = None,
    progress: str = "auto",
) -> Any:
    """Continue ``study`` to its target (or ``trials`` in all, or ``add`` more) as stored."""
    if trials is not None and add is not None:
        raise UsageError("trials and add: give one of them, not both")
    options = {"trials": trials, "add": add, "storage": storage}
    return _run(_request(study, options, resume_only=True), progress)


def _run(request: RunRequest, progress: str) -> Any:
    from search.progress import PROGRESS_MODES, make_observer
    from search.service import run_search

    if progress not in PROGRESS_MODES:
        raise UsageError(f"progress {progress!r}: expected one of {', '.join(PROGRESS_MODES)}")
    observer = make_observer(progress)
    shown = {"LogObserver": "log", "RichObserver": "bar"}.get(type(observer).__name__, "off")
    try:
        return run_search(request, observer, hard_abort=False, progress=shown)
    finally:
        observer.close()


def _open(storage: str | None) -> StudyDatabase:
    return StudyDatabase(storage, create=False)


@_quiet
def best(
    study: str, *, top: int = 1, where: str | None = None, storage: str | None = None
) -> list[TrialRecord]:
    """The ``top`` best finished trials (``where``: a filter as ``--where`` takes)."""
    from search.validation import check_count
    from storage.filters import where_filter

    check_count("top", top)
    db = _open(storage)
    try:
        keep = where_filter(db, study, where) if where is not None else None
        return db.best(study, top=top, predicate=keep)
    finally:
        db.dispose()


@_quiet
def trials(
    study: str,
    *,
    states: list[str] | None = None,
    where: str | None = None,
    storage: str | None = None,
) -> list[TrialRecord]:
    """Every trial of ``study`` in trial order (``states``: only these, e.g. ["complete"])."""
    from storage import TRIAL_STATES

    for state in states or []:
        if state not in TRIAL_STATES:
            raise UsageError(f"state {state!r}: expected one of {', '.join(TRIAL_STATES)}")
    db = _open(storage)
    try:
        rows = db.trials(study, states or None)
        if where is not None:
            from storage.filters import where_filter

            keep = where_filter(db, study, where, rows)
            rows = [t for t in rows if keep(t.config or t.params)]
        return rows
    finally:
        db.dispose()


@_quiet
def epochs(study: str, trial: int, *, storage: str | None = None) -> list[EpochRecord]:
    """A trial's learning curve: one record per epoch (loss, accuracy, val_*, seconds)."""
    db = _open(storage)
    try:
        found = [t for t in db.trials(study) if t.number == trial]
        if not found:
            raise UsageError(f"trial {trial}: study {study!r} has no trial with this number")
        return db.epochs(found[0].trial_id)
    finally:
        db.dispose()


@_quiet
def studies(*, storage: str | None = None) -> list[StudyRecord]:
    """Every study of the database with its engine, space, data, counts and best value."""
    db = _open(storage)
    try:
        return db.studies()
    finally:
        db.dispose()
