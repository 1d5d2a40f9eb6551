"""Turn rows into text: a Rich table, JSON or CSV. The one place that knows those formats.

Everything the CLI prints as a listing, and everything ``export`` writes, goes through the
writers here, so a value reads the same wherever it appears:

- JSON (:func:`to_json`): indented; NaN and infinities become ``null`` (JSON has no NaN);
  datetimes and dates become ISO 8601 strings; tuples become lists; anything else unknown is
  written as its ``str()``.
- CSV (:func:`csv_text`): one header row, ``\\n`` line ends, quoting as Python's ``csv`` module
  does (a cell with a comma, quote or line break is quoted, quotes doubled); ``None`` is an empty
  cell and a datetime its ISO 8601 string.
- Tables (:func:`table_text`): a plain-text Rich table as wide as the terminal (200 characters
  into a file or pipe, where nothing wraps lines), numeric columns
  right-aligned, cells through :func:`value_text` (4 significant decimals, ``nan``, blanks for
  ``None``).

Which rows and columns a listing has is decided here for trials and studies
(:func:`render_trials`, :func:`render_studies`); the comparison of ``report`` and the export of
``export`` decide their own columns and use these writers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Any

from storage import TRIAL_STATES, StudyRecord, TrialRecord, TrialState

FORMATS = ("table", "json", "csv")

#: The states a study listing counts, one column each (a waiting trial is not counted there).
STUDY_COUNT_STATES: tuple[str, ...] = tuple(s for s in TRIAL_STATES if s != TrialState.WAITING)

#: Table columns whose cells are right-aligned.
NUMERIC_COLUMNS = frozenset(
    "rank trial value epochs epochs_trained duration_s best trials target limit".split()
    + list(STUDY_COUNT_STATES)
)


# -- values ----------------------------------------------------------------------------------


def finite(v: Any) -> Any:
    """``v``, or ``None`` where it is a NaN or infinite float (a missing number)."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def value_text(v: Any) -> str:
    """A value as a table cell: blank for ``None``, floats to 4 decimals (4 significant if tiny)."""
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def fixed_text(v: Any, places: int = 4) -> str:
    """A value as a table cell with floats at a fixed number of decimals (blank for ``None``)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{places}f}"
    return str(v)


def params_text(params: dict[str, Any]) -> str:
    """Parameters on one line: ``name=value`` pairs, values as in a table."""
    return " ".join(f"{k}={value_text(v)}" for k, v in params.items())


# -- JSON ------------------------------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as ``None`` (JSON has no NaN), through dicts and lists."""
    if isinstance(obj, float):
        return finite(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _json_default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def to_json(obj: Any) -> str:
    """``obj`` as indented JSON, no trailing newline (see the module notes for the encoding)."""
    return json.dumps(json_safe(obj), indent=2, default=_json_default, allow_nan=False)


# -- CSV -------------------------------------------------------------------------------------


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and math.isfinite(v):
        # Metrics are float32 in float64 clothing (0.8838000297546387): 7 significant digits
        # are all a float32 holds, and all a spreadsheet should show.
        return float(f"{v:.7g}")
    if isinstance(v, datetime | date):
        return v.isoformat()
    return v


def csv_text(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A header row and ``rows`` as CSV, no trailing newline."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for r in rows:
        writer.writerow([_csv_cell(c) for c in r])
    return buf.getvalue().rstrip("\n")


# -- tables ----------------------------------------------------------------------------------


#: The width of a table written to a file or a pipe (nothing there wraps long lines).
WIDE = 200


def output_width() -> int:
    """A terminal's width when stdout is one (cells fold to fit), else :data:`WIDE`."""
    import shutil
    import sys

    try:
        if sys.stdout.isatty():
            return max(40, shutil.get_terminal_size((WIDE, 24)).columns)
    except (AttributeError, ValueError):  # a closed or replaced stdout
        pass
    return WIDE


def table_text(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    right: Collection[str] = NUMERIC_COLUMNS,
    cell: Callable[[str, Any], str] | None = None,
    overflow: str = "fold",
) -> str:
    """``rows`` as a plain-text Rich table (no colour, :func:`output_width` wide, no trailing
    newline).

    ``right`` names the right-aligned columns; ``cell(column, value)`` writes a cell (by default
    :func:`value_text` of the value); ``overflow`` is what Rich does with a cell too wide.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for h in headers:
        table.add_column(h, overflow=overflow, justify="right" if h in right else "left")
    for r in rows:
        if cell is None:
            table.add_row(*[value_text(c) for c in r])
        else:
            table.add_row(*[cell(h, c) for h, c in zip(headers, r, strict=True)])
    console = Console(
        file=io.StringIO(), width=output_width(), force_terminal=False, color_system=None
    )
    console.print(table)
    return console.file.getvalue().rstrip("\n")


# -- trials and studies ----------------------------------------------------------------------


def trial_dict(t: TrialRecord, rank: int | None = None) -> dict[str, Any]:
    """A trial as a JSON-ready dict (``rank`` first when given)."""
    out = t.to_dict()
    # The name `export` and the tables use; ``epochs`` stays for scripts that read it.
    out["epochs_trained"] = t.epochs
    if rank is not None:
        out = {"rank": rank, **out}
    return json_safe(out)


def render_trials(
    trials: Sequence[TrialRecord], fmt: str, *, ranked: bool = False, with_test: bool = False
) -> str:
    """``best`` and ``trials``: JSON objects; CSV with one column per parameter; a table."""
    if fmt == "json":
        return to_json([trial_dict(t, i + 1 if ranked else None) for i, t in enumerate(trials)])
    # epochs_trained, as in `export` (whose `epochs` is a configuration's maximum).
    headers = (["rank"] if ranked else []) + [
        "trial",
        "state",
        "value",
        "epochs_trained",
        "duration_s",
    ]
    if with_test:
        headers += ["test_accuracy", "test_loss"]
    if fmt == "csv":
        names = sorted({k for t in trials for k in t.params})
        rows = []
        for i, t in enumerate(trials):
            row = ([i + 1] if ranked else []) + [t.number, t.state, t.value, t.epochs, t.duration_s]
            if with_test:
                row += [t.test_accuracy, t.test_loss]
            rows.append(row + [t.params.get(n) for n in names])
        return csv_text(headers + names, rows)
    rows = []
    for i, t in enumerate(trials):
        dur = None if t.duration_s is None else round(t.duration_s, 1)
        row = ([i + 1] if ranked else []) + [t.number, t.state, t.value, t.epochs, dur]
        if with_test:
            row += [t.test_accuracy, t.test_loss]
        rows.append(row + [params_text(t.params)])
    return table_text(headers + ["params"], rows)


def render_studies(studies: Sequence[StudyRecord], fmt: str) -> str:
    """``studies``: JSON objects; CSV and table with the trial count of each state."""
    if fmt == "json":
        return to_json([s.to_dict() for s in studies])
    headers = [
        "study",
        "engine",
        "space",
        "data",
        "limit",
        "trials",
        "target",
        *STUDY_COUNT_STATES,
        "best",
    ]
    rows = [
        [
            s.name,
            s.engine,
            s.space,
            s.data,
            s.limit,
            sum(s.counts.values()),
            s.target_trials,
            *[s.counts.get(k, 0) for k in STUDY_COUNT_STATES],
            s.best_value,
        ]
        for s in studies
    ]
    if fmt == "csv":
        return csv_text(headers, rows)
    return table_text(headers, rows)
