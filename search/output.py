"""Render records as a Rich table, JSON or CSV; one function per kind of listing."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from storage import StudyRecord, TrialRecord

FORMATS = ("table", "json", "csv")


def _fmt_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt_value(v)}" for k, v in params.items())


def _json_default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=False)


def _clean(obj: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for h in headers:
        table.add_column(h, overflow="fold", justify="right" if h in NUMERIC_COLUMNS else "left")
    for r in rows:
        table.add_row(*[_fmt_value(c) for c in r])
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


def _csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for r in rows:
        writer.writerow(["" if c is None else c for c in r])
    return buf.getvalue().rstrip("\n")


NUMERIC_COLUMNS = set(
    "rank trial value epochs duration_s best trials target limit "
    "complete pruned failed running interrupted".split()
)


def trial_dict(t: TrialRecord, rank: int | None = None) -> dict[str, Any]:
    out = t.to_dict()
    if rank is not None:
        out = {"rank": rank, **out}
    return _clean(out)


def render_trials(
    trials: Sequence[TrialRecord], fmt: str, *, ranked: bool = False, with_test: bool = False
) -> str:
    if fmt == "json":
        return to_json([trial_dict(t, i + 1 if ranked else None) for i, t in enumerate(trials)])
    headers = (["rank"] if ranked else []) + ["trial", "state", "value", "epochs", "duration_s"]
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
        return _csv(headers + names, rows)
    rows = []
    for i, t in enumerate(trials):
        dur = None if t.duration_s is None else round(t.duration_s, 1)
        row = ([i + 1] if ranked else []) + [t.number, t.state, t.value, t.epochs, dur]
        if with_test:
            row += [t.test_accuracy, t.test_loss]
        rows.append(row + [params_text(t.params)])
    return _table(None, headers + ["params"], rows)


def render_studies(studies: Sequence[StudyRecord], fmt: str) -> str:
    if fmt == "json":
        return to_json([_clean(s.to_dict()) for s in studies])
    states = ("complete", "pruned", "failed", "running", "interrupted")
    headers = ["study", "engine", "space", "data", "limit", "trials", "target", *states, "best"]
    rows = [
        [
            s.name,
            s.engine,
            s.space,
            s.data,
            s.limit,
            sum(s.counts.values()),
            s.target_trials,
            *[s.counts.get(k, 0) for k in states],
            s.best_value,
        ]
        for s in studies
    ]
    if fmt == "csv":
        return _csv(headers, rows)
    return _table(None, headers, rows)
