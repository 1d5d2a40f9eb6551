"""``rnnsearch report``: how cells, directions and sequence lengths compare in one study.

Writes PNG figures (matplotlib, Agg backend) and one self-contained HTML page with the figures
inlined as base64, plus ``report.json`` with the same numbers. matplotlib and Optuna are imported
inside the functions that need them.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from search.objectives import front_rows, pareto_trials, study_objectives
from search.output import fixed_text, params_text, table_text, to_json
from storage import (
    SCORED_STATES,
    EpochRecord,
    StudyConfig,
    StudyDatabase,
    TrialRecord,
    TrialState,
)

GROUP_KEYS = ("cell", "bidirectional", "maxlen")
COMPARISON_COLUMNS = (
    "cell",
    "direction",
    "maxlen",
    "trials",
    "pruned",
    "best_val_accuracy",
    "median_val_accuracy",
    "mean_epoch_s",
    "params_best",
    "params_median",
    "best_trial",
)


@dataclass(frozen=True)
class GroupRow:
    """One cell x direction x maxlen combination of a study."""

    cell: str
    direction: str  # "bidirectional" or "forward"
    maxlen: int | None
    trials: int
    pruned: int
    best_val_accuracy: float | None
    median_val_accuracy: float | None
    mean_epoch_s: float | None
    params_best: int | None
    params_median: int | None
    best_trial: int | None

    def cells(self) -> list[Any]:
        return [getattr(self, c) for c in COMPARISON_COLUMNS]


@dataclass
class Report:
    study: str
    out_dir: Path
    html: Path
    figures: dict[str, Path]
    groups: list[GroupRow]
    importances: dict[str, float] | None
    top_trials: list[int]
    notes: list[str] = field(default_factory=list)
    #: The study's non-dominated trials (search.objectives.front_rows) in ``front_objectives``:
    #: the study's objectives, or val_accuracy and latency_ms for a single-objective study.
    front: list[dict[str, Any]] = field(default_factory=list)
    front_objectives: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "out_dir": str(self.out_dir),
            "html": str(self.html),
            "figures": {k: str(v) for k, v in self.figures.items()},
            "comparison": [asdict(g) for g in self.groups],
            "importances": self.importances,
            "top_trials": self.top_trials,
            "notes": self.notes,
            "front_objectives": list(self.front_objectives),
            "front": self.front,
        }


def trial_score(t: TrialRecord, epochs: Sequence[EpochRecord]) -> float | None:
    """A trial's best validation accuracy over its epochs (the search's objective)."""
    values = [e.val_accuracy for e in epochs if e.val_accuracy is not None]
    if values:
        return max(values)
    return t.value


def _direction(config: dict[str, Any]) -> str:
    return "bidirectional" if config.get("bidirectional") else "forward"


def compare(
    trials: Sequence[TrialRecord],
    epochs: dict[int, list[EpochRecord]],
    param_counts: dict[int, int] | None = None,
) -> list[GroupRow]:
    """The comparison table: one row per cell x direction x maxlen, best group first."""
    param_counts = param_counts or {}
    groups: dict[tuple[str, str, Any], list[TrialRecord]] = {}
    for t in trials:
        if t.state not in SCORED_STATES:
            continue
        cfg = t.config or t.params
        key = (str(cfg.get("cell", "?")), _direction(cfg), cfg.get("maxlen"))
        groups.setdefault(key, []).append(t)
    rows: list[GroupRow] = []
    for (cell, direction, maxlen), members in groups.items():
        scored = [(trial_score(t, epochs.get(t.trial_id, [])), t) for t in members]
        scored = [(s, t) for s, t in scored if s is not None]
        seconds = [
            e.seconds for t in members for e in epochs.get(t.trial_id, []) if e.seconds is not None
        ]
        counts = [
            c for t in members if (c := t.param_count or param_counts.get(t.trial_id)) is not None
        ]
        best = max(scored, key=lambda st: (st[0], -st[1].epochs, -st[1].number)) if scored else None
        best_params = None
        if best is not None:
            best_params = best[1].param_count or param_counts.get(best[1].trial_id)
        rows.append(
            GroupRow(
                cell=cell,
                direction=direction,
                maxlen=int(maxlen) if maxlen is not None else None,
                trials=len(members),
                pruned=sum(1 for t in members if t.state == TrialState.PRUNED),
                best_val_accuracy=best[0] if best else None,
                median_val_accuracy=statistics.median(s for s, _ in scored) if scored else None,
                mean_epoch_s=statistics.fmean(seconds) if seconds else None,
                params_best=best_params,
                params_median=int(statistics.median(counts)) if counts else None,
                best_trial=best[1].number if best else None,
            )
        )
    rows.sort(key=lambda r: (-(r.best_val_accuracy or 0.0), r.cell, r.direction, r.maxlen or 0))
    return rows


def missing_param_counts(
    trials: Sequence[TrialRecord], data: dict[str, Any] | None = None
) -> dict[int, int]:
    """Parameter counts of scored trials that have none recorded, by building their models.

    The input shape comes from the study's data (read through the data cache); a count that
    cannot be computed stays blank.
    """
    needed = {"cell", "units", "maxlen", "layers", "head"}
    todo = [
        t
        for t in trials
        if t.state in SCORED_STATES and t.param_count is None and needed <= set(t.config)
    ]
    if not todo or not data:
        return {}
    from search import tfenv

    tfenv.quiet_import()
    import keras

    from search.data import source_from_description
    from search.model import build_model

    try:
        source = source_from_description(data)
    except Exception:  # noqa: BLE001 - the data moved or changed: no counts, still a report
        return {}
    out: dict[int, int] = {}
    for t in todo:
        try:
            out[t.trial_id] = int(build_model(dict(t.config), source.spec(t.config)).count_params())
        except Exception:  # noqa: BLE001 - a count we cannot compute is shown as blank
            continue
        finally:
            keras.backend.clear_session()
    return out


def _comparison_cell(column: str, value: Any) -> str:
    return fixed_text(value, 2 if column == "mean_epoch_s" else 4)


def comparison_table(groups: Sequence[GroupRow]) -> str:
    """The comparison as a plain-text Rich table (numbers right-aligned, fixed decimals)."""
    return table_text(
        COMPARISON_COLUMNS,
        [g.cells() for g in groups],
        right=set(COMPARISON_COLUMNS) - {"cell", "direction"},
        cell=_comparison_cell,
        overflow="ellipsis",
    )


# -- figures -------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(t: TrialRecord) -> str:
    cfg = t.config or t.params
    bi = "bi-" if cfg.get("bidirectional") else ""
    return f"#{t.number} {bi}{cfg.get('cell', '?')} maxlen={cfg.get('maxlen', '?')}"


def plot_comparison(groups: Sequence[GroupRow], path: Path) -> Path:
    plt = _pyplot()
    labels = [f"{g.cell} {g.direction} {g.maxlen}" for g in groups][::-1]
    best = [g.best_val_accuracy or 0.0 for g in groups][::-1]
    median = [g.median_val_accuracy or 0.0 for g in groups][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(groups), 2) + 1.5))
    ys = range(len(groups))
    ax.barh([y + 0.2 for y in ys], best, height=0.4, label="best", color="#1f77b4")
    ax.barh([y - 0.2 for y in ys], median, height=0.4, label="median", color="#aec7e8")
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels)
    ax.set_xlabel("validation accuracy")
    ax.set_title("cell x direction x maxlen")
    lo = min([v for v in best + median if v > 0] or [0.0])
    ax.set_xlim(max(0.0, lo - 0.05), 1.0)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _count_text(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def plot_front(trials: Sequence[TrialRecord], front: Sequence[TrialRecord], path: Path) -> Path:
    """Validation accuracy against latency (batch of 256) for every complete trial; the
    non-dominated ones joined and labelled with their parameter counts (marker area grows
    with the count)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    biggest = max((t.param_count or 1 for t in trials), default=1)

    def size(t: TrialRecord) -> float:
        return 20 + 280 * ((t.param_count or 0) / biggest) ** 0.5

    on_front = {t.number for t in front}
    rest = [t for t in trials if t.number not in on_front]
    ax.scatter(
        [t.latency_ms for t in rest],
        [t.val_accuracy for t in rest],
        s=[size(t) for t in rest],
        color="#bbbbbb",
        alpha=0.7,
        label="other trials",
    )
    ordered = sorted(front, key=lambda t: t.latency_ms or 0.0)
    xs = [t.latency_ms for t in ordered]
    ys = [t.val_accuracy for t in ordered]
    ax.step(xs, ys, where="post", color="#1f77b4", alpha=0.6)
    ax.scatter(xs, ys, s=[size(t) for t in ordered], color="#1f77b4", label="Pareto front")
    for t in ordered:
        ax.annotate(
            f"#{t.number} {_count_text(t.param_count)}",
            (t.latency_ms, t.val_accuracy),
            textcoords="offset points",
            xytext=(6, -10),
            fontsize=8,
        )
    latencies = [t.latency_ms for t in trials if t.latency_ms]
    if latencies and max(latencies) / min(latencies) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency, ms per batch of 256 (median, this machine)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("accuracy against latency (labels: trial, parameters)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(
    top: Sequence[TrialRecord], epochs: dict[int, list[EpochRecord]], path: Path
) -> Path:
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, t in enumerate(top):
        rows = epochs.get(t.trial_id, [])
        xs = [e.epoch for e in rows]
        c = colors[i % len(colors)]
        label = _label(t)
        for ax, train_key, val_key in (
            (ax_acc, "accuracy", "val_accuracy"),
            (ax_loss, "loss", "val_loss"),
        ):
            train = [getattr(e, train_key) for e in rows]
            val = [getattr(e, val_key) for e in rows]
            ax.plot(xs, train, color=c, linestyle="--", marker="o", markersize=3)
            ax.plot(xs, val, color=c, linestyle="-", marker="o", markersize=3, label=label)
    for ax, name in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name}: validation (solid), training (dashed)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(
    trials: Sequence[TrialRecord], epochs: dict[int, list[EpochRecord]], path: Path
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    done = sorted((t for t in trials if t.state in SCORED_STATES), key=lambda t: t.number)
    for state, marker, color in (
        (TrialState.COMPLETE, "o", "#1f77b4"),
        (TrialState.PRUNED, "x", "#d62728"),
    ):
        pts = [
            (t.number, s)
            for t in done
            if t.state == state and (s := trial_score(t, epochs.get(t.trial_id, []))) is not None
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=marker,
                color=color,
                label=state.value,
                zorder=3,
            )
    running: list[tuple[int, float]] = []
    best = None
    for t in done:
        # The best validation accuracy, whatever the study's objectives (its value is the
        # first objective's, which may be a latency).
        score = trial_score(t, epochs.get(t.trial_id, [])) if t.state == "complete" else None
        if score is not None:
            best = score if best is None else max(best, score)
        if best is not None:
            running.append((t.number, best))
    if running:
        ax.step(
            [p[0] for p in running],
            [p[1] for p in running],
            where="post",
            color="#2ca02c",
            label="best so far",
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("optimisation history")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_importances(importances: dict[str, float], path: Path, method: str = "fANOVA") -> Path:
    plt = _pyplot()
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.4 * max(len(names), 2) + 1.2))
    ax.barh(names, values, color="#9467bd")
    ax.set_xlabel(f"importance ({method}, normalised to sum to 1)")
    ax.set_title("parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def param_importances(
    db: StudyDatabase, study: str
) -> tuple[dict[str, float] | None, str | None, str]:
    """Optuna's parameter importances (or None and why not), and the evaluator's name.

    fANOVA (Optuna's default) when scikit-learn is installed, else PED-ANOVA, which needs
    nothing beyond Optuna.
    """
    import importlib.util

    method = "fANOVA" if importlib.util.find_spec("sklearn") else "PED-ANOVA"
    complete = db.trials(study, [TrialState.COMPLETE])
    if len(complete) < 2:
        return (
            None,
            f"parameter importances need at least 2 complete trials; this study has "
            f"{len(complete)}",
            method,
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        ostudy = optuna.load_study(study_name=study, storage=db.optuna_storage)
        if method == "fANOVA":
            evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        else:
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        if len(ostudy.directions) > 1:
            # A multi-objective study: importances for its first objective, as a value to
            # minimise (PED-ANOVA ranks parameters by what makes a target low).
            sign = -1.0 if ostudy.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
            raw = optuna.importance.get_param_importances(
                ostudy, evaluator=evaluator, target=lambda t: sign * t.values[0]
            )
        else:
            raw = optuna.importance.get_param_importances(ostudy, evaluator=evaluator)
    except Exception as exc:  # noqa: BLE001 - Optuna raises several kinds on tiny studies
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"parameter importances could not be computed: {first}", method
    if not raw:
        return (
            None,
            "parameter importances: no searched parameter varies across complete trials",
            method,
        )
    return {k: float(v) for k, v in raw.items()}, None, method


# -- the page ------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    """An HTML cell: integers with thousands separators, floats to 4 decimals."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return fixed_text(v)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(
    report: Report,
    header: dict[str, Any],
    top: Sequence[TrialRecord],
) -> str:
    e = html.escape
    head_rows = "".join(
        f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in header.items()
    )
    comp_head = "".join(f"<th>{e(c)}</th>" for c in COMPARISON_COLUMNS)

    def cell(column: str, v: Any) -> str:
        text = fixed_text(v, 2) if column == "mean_epoch_s" else _fmt(v)
        return f"<td>{e(text)}</td>"

    comp_rows = "".join(
        '<tr class="group">'
        + "".join(cell(c, v) for c, v in zip(COMPARISON_COLUMNS, g.cells(), strict=True))
        + "</tr>"
        for g in report.groups
    )
    top_rows = "".join(
        f"<tr><td>{t.number}</td><td>{e(_fmt(t.value))}</td><td>{t.epochs}</td>"
        f"<td>{e(_fmt(t.param_count))}</td><td>{e(_fmt(t.test_accuracy))}</td>"
        f"<td style='text-align:left'>{e(_params(t))}</td></tr>"
        for t in top
    )
    imp_rows = (
        "".join(f"<tr><td>{e(k)}</td><td>{v:.3f}</td></tr>" for k, v in report.importances.items())
        if report.importances
        else ""
    )
    figs = report.figures
    sections = [
        f"<h1>rnnsearch report: {e(report.study)}</h1>",
        f"<table class='meta'>{head_rows}</table>",
        "<h2>Cell x direction x maxlen</h2>",
        "<p>Complete and pruned trials; a trial's score is its best validation accuracy over "
        "its epochs (pruned trials trained fewer epochs). Mean epoch time is over all their "
        "epochs; parameter counts are of the group's best trial and the group's median.</p>",
        f"<table id='comparison'><thead><tr>{comp_head}</tr></thead>"
        f"<tbody>{comp_rows}</tbody></table>",
    ]
    if "comparison" in figs:
        sections.append(_img(figs["comparison"], "comparison"))
    sections.append("<h2>Learning curves of the top trials</h2>")
    if "learning_curves" in figs:
        sections.append(_img(figs["learning_curves"], "learning curves"))
    sections.append(
        "<table id='top'><thead><tr><th>trial</th><th>value</th><th>epochs</th><th>params</th>"
        "<th>test_accuracy (retrained)</th><th>searched parameters</th></tr></thead>"
        f"<tbody>{top_rows}</tbody></table>"
    )
    if "front" in figs:
        names = report.front_objectives
        extra = [n for n in ("params", "latency_ms", "model_mb") if n not in names]
        cols = [*names, *extra]
        front_head = "".join(f"<th>{e(c)}</th>" for c in ["trial", *cols])
        front_body = "".join(
            f"<tr><td>{r['number']}</td>"
            + "".join(f"<td>{e(_fmt(r[c]))}</td>" for c in cols)
            + f"<td style='text-align:left'>{e(params_text(r['hyperparameters']))}</td></tr>"
            for r in report.front
        )
        sections.append("<h2>Accuracy and cost: the Pareto front</h2>")
        sections.append(
            "<p>Every complete trial's best validation accuracy against its model's latency "
            "(median ms to predict a batch of 256 validation examples on the machine that "
            "trained it); the blue trials are those no other trial beats in both. The table "
            f"lists the non-dominated trials in {e(', '.join(names))}; any of them can be "
            "retrained with <code>rnnsearch retrain STUDY --trial N</code>.</p>"
        )
        sections.append(_img(figs["front"], "Pareto front: accuracy against latency"))
        sections.append(
            f"<table id='front'><thead><tr>{front_head}<th>searched parameters</th></tr>"
            f"</thead><tbody>{front_body}</tbody></table>"
        )
    sections.append("<h2>Optimisation history</h2>")
    if "history" in figs:
        sections.append(_img(figs["history"], "optimisation history"))
    sections.append("<h2>Parameter importances</h2>")
    if "importances" in figs:
        sections.append(_img(figs["importances"], "parameter importances"))
        sections.append(f"<table id='importances'><tbody>{imp_rows}</tbody></table>")
    for note in report.notes:
        sections.append(f"<p class='note'>{e(note)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
        ".note{color:#8a5300;background:#fff6e0;padding:6px 10px}"
    )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>rnnsearch report: {e(report.study)}</title><style>{style}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _params(t: TrialRecord) -> str:
    return params_text(t.params)


def build_report(db: StudyDatabase, study: str, out_dir: Path, *, top: int = 5) -> Report:
    """Write the figures, report.json and index.html for ``study`` into ``out_dir``."""
    out_dir = Path(out_dir)
    # Everything is read before the folder is made: an unknown study or a damaged record is
    # refused with nothing created.
    sid = db.study_id(study)
    trials = db.trials(study)
    epochs = db.epochs_by_trial(sid)
    config = db.study_config(study)
    notes: list[str] = []
    groups = compare(trials, epochs, missing_param_counts(trials, config.data if config else None))
    if not groups:
        notes.append("no complete or pruned trial yet: nothing to compare")
    best = db.best(study, top=top)
    # Written into a staging folder beside out_dir, then moved in: an interrupted report (Ctrl-C)
    # leaves no half-written folder, and an existing one keeps its files until the new are done.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        report = _write_report(
            db, study, staging, out_dir, trials, epochs, config, groups, best, notes
        )
        out_dir.mkdir(exist_ok=True)
        for written in sorted(staging.iterdir()):
            os.replace(written, out_dir / written.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _write_report(
    db: StudyDatabase,
    study: str,
    staging: Path,
    out_dir: Path,
    trials: list[TrialRecord],
    epochs: dict[int, list[EpochRecord]],
    config: StudyConfig | None,
    groups: list[GroupRow],
    best: list[TrialRecord],
    notes: list[str],
) -> Report:
    """The report's files written into ``staging``; the returned report names them where
    :func:`build_report` moves them (``out_dir``)."""
    figures: dict[str, Path] = {}
    if groups:
        figures["comparison"] = plot_comparison(groups, staging / "comparison.png")
    if best:
        figures["learning_curves"] = plot_learning_curves(
            best, epochs, staging / "learning_curves.png"
        )
    else:
        notes.append("no complete trial yet: no learning curves")
    if any(t.state in SCORED_STATES for t in trials):
        figures["history"] = plot_history(trials, epochs, staging / "history.png")
    measured = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.latency_ms is not None
        and t.val_accuracy is not None
    ]
    front_table: list[TrialRecord] = []
    objectives: tuple[str, ...] = study_objectives(db, study)
    if measured:
        drawn = {t.number for t in pareto_trials(db, study, ("val_accuracy", "latency_ms"))[1]}
        figures["front"] = plot_front(
            measured, [t for t in measured if t.number in drawn], staging / "front.png"
        )
        if len(objectives) == 1:
            objectives = ("val_accuracy", "latency_ms")
        front_table = pareto_trials(db, study, objectives)[1]
    else:
        notes.append("no complete trial with measured latency: no accuracy/latency front")
    importances, why, method = param_importances(db, study)
    if importances:
        figures["importances"] = plot_importances(importances, staging / "importances.png", method)
    elif why:
        notes.append(why)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    header: dict[str, Any] = {
        "study": study,
        "engine": config.engine if config else None,
        "space": config.space_name if config else None,
        "data": (config.data or {}).get("source") if config else None,
        "training examples": (config.data or {}).get("train_examples") if config else None,
        "seed": config.seed if config else None,
        "trials": ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none",
        "best value": best[0].value if best else None,
        "importance method": method,
        "objectives": ", ".join(study_objectives(db, study)),
    }
    report = Report(
        study=study,
        out_dir=staging,
        html=staging / "index.html",
        figures=figures,
        groups=groups,
        importances=importances,
        top_trials=[t.number for t in best],
        notes=notes,
        front=front_rows(front_table, objectives) if front_table else [],
        front_objectives=objectives if front_table else (),
    )
    report.html.write_text(render_html(report, header, best), encoding="utf-8")
    final = replace(
        report,
        out_dir=out_dir,
        html=out_dir / report.html.name,
        figures={k: out_dir / v.name for k, v in figures.items()},
    )
    (staging / "report.json").write_text(to_json(final.to_dict()), encoding="utf-8")
    return final
