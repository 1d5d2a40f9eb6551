"""``rnnsearch export``: every trial of a study with its parameters and metrics, as CSV or JSON.

JSON holds one object per trial, with its searched ``params``, its resolved ``config``, its
per-epoch ``curve`` and ``extra`` (best epoch, retraining, engine details). CSV holds one row
per trial: the metric columns, then one column per configuration key (sampled or fixed), so it
loads straight into a spreadsheet or pandas.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from search.output import csv_text, finite, to_json
from storage import EpochRecord, StudyDatabase, TrialRecord

METRIC_COLUMNS = (
    "trial",
    "state",
    "value",
    "epochs_trained",
    "duration_s",
    "mean_epoch_s",
    "best_val_accuracy",
    "best_epoch",
    "final_loss",
    "final_accuracy",
    "final_val_loss",
    "final_val_accuracy",
    "param_count",
    # What multi-objective search judges (search.objectives): measured once a trial trained.
    "best_val_loss",
    "latency_ms",
    "latency_single_ms",
    "model_mb",
    "test_loss",
    "test_accuracy",
    "started_at",
    "finished_at",
    "reason",
)


def trial_row(t: TrialRecord, curve: Sequence[EpochRecord]) -> dict[str, Any]:
    """One trial's metrics as a flat dict (keys: METRIC_COLUMNS)."""
    scored = [(e.val_accuracy, -e.epoch) for e in curve if e.val_accuracy is not None]
    best = max(scored) if scored else None
    last = curve[-1] if curve else None
    seconds = [e.seconds for e in curve if e.seconds is not None]
    return {
        "trial": t.number,
        "state": t.state,
        "value": finite(t.value),
        "epochs_trained": t.epochs,
        "duration_s": finite(t.duration_s),
        "mean_epoch_s": statistics.fmean(seconds) if seconds else None,
        "best_val_accuracy": finite(best[0]) if best else None,
        "best_epoch": -best[1] if best else None,
        "final_loss": finite(last.loss) if last else None,
        "final_accuracy": finite(last.accuracy) if last else None,
        "final_val_loss": finite(last.val_loss) if last else None,
        "final_val_accuracy": finite(last.val_accuracy) if last else None,
        "param_count": t.param_count,
        "best_val_loss": finite(t.val_loss),
        "latency_ms": finite(t.latency_ms),
        "latency_single_ms": finite(t.latency_single_ms),
        "model_mb": finite(t.model_mb),
        "test_loss": finite(t.test_loss),
        "test_accuracy": finite(t.test_accuracy),
        "started_at": t.started_at.isoformat() if t.started_at else None,
        "finished_at": t.finished_at.isoformat() if t.finished_at else None,
        "reason": t.reason,
    }


def export_records(db: StudyDatabase, study: str) -> list[dict[str, Any]]:
    """Every trial, in trial order: metrics, ``params``, ``config`` and ``curve``."""
    trials = db.trials(study)
    curves = db.epochs_by_trial(db.study_id(study))
    out = []
    for t in trials:
        curve = curves.get(t.trial_id, [])
        row = trial_row(t, curve)
        row["engine"] = t.engine
        # Every objective value of a multi-objective trial, in the study's objective order.
        row["values"] = [finite(v) for v in t.values] if t.values is not None else None
        row["params"] = dict(t.params)
        row["config"] = dict(t.config)
        row["extra"] = dict(t.extra)
        row["curve"] = [{k: finite(v) for k, v in vars(e).items()} for e in curve]
        out.append(row)
    return out


def config_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every configuration key of ``records``, in first-seen order (the CSV's last columns)."""
    keys: list[str] = []
    for r in records:
        for k in r["config"]:
            if k not in keys:
                keys.append(k)
    return keys


def export_csv(records: Sequence[dict[str, Any]]) -> str:
    """One row per trial: ``METRIC_COLUMNS``, then one column per configuration key."""
    keys = config_columns(records)
    rows = [[r[c] for c in METRIC_COLUMNS] + [r["config"].get(k) for k in keys] for r in records]
    return csv_text([*METRIC_COLUMNS, *keys], rows) + "\n"


def export_json(records: Sequence[dict[str, Any]]) -> str:
    """One object per trial, with ``params``, ``config``, ``extra`` and ``curve``."""
    return to_json(list(records)) + "\n"


def export_study(db: StudyDatabase, study: str, fmt: str) -> str:
    """Every trial of ``study`` as CSV or JSON text (ending with a newline)."""
    records = export_records(db, study)
    return export_csv(records) if fmt == "csv" else export_json(records)
