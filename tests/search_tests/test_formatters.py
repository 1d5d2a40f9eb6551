"""The pure formatters: trials, studies, the comparison and the export as table, JSON and CSV.

Records are built by hand: no database, no TensorFlow.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from typing import Any

import pytest

from search.export import (
    METRIC_COLUMNS,
    export_csv,
    export_json,
    export_records,
    export_study,
    trial_row,
)
from search.output import (
    NUMERIC_COLUMNS,
    STUDY_COUNT_STATES,
    csv_text,
    finite,
    fixed_text,
    params_text,
    render_studies,
    render_trials,
    table_text,
    to_json,
    trial_dict,
    value_text,
)
from search.report import GroupRow, comparison_table
from storage import (
    FINISHED_STATES,
    SCORED_STATES,
    TRIAL_STATES,
    EpochRecord,
    StudyRecord,
    TrialRecord,
    TrialState,
)

START = datetime(2024, 5, 6, 7, 8, 9, 123456)
END = datetime(2024, 5, 6, 7, 9, 19)
NAN = float("nan")


def trial(number: int, **kw: Any) -> TrialRecord:
    base: dict[str, Any] = dict(
        study="s",
        number=number,
        trial_id=100 + number,
        state="complete",
        value=0.8125,
        params={"cell": "lstm", "units": 8},
        config={"cell": "lstm", "units": 8, "epochs": 2},
        epochs=2,
        duration_s=12.345,
        started_at=START,
        finished_at=END,
    )
    base.update(kw)
    return TrialRecord(**base)


def study(name: str = "s", **kw: Any) -> StudyRecord:
    base: dict[str, Any] = dict(
        name=name,
        study_id=1,
        engine="optuna",
        space="default",
        data="imdb.npz",
        direction="maximize",
        counts={"complete": 3, "pruned": 1, "failed": 1, "interrupted": 2},
        best_value=0.875,
        target_trials=10,
        created_at=START,
        limit=500,
        seed=3,
    )
    base.update(kw)
    return StudyRecord(**base)


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def csv_header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def table_lines(text: str) -> list[str]:
    """The data lines of a Rich table (those between the vertical bars)."""
    return [line for line in text.splitlines() if line.startswith("│")]


def table_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("│").split("│")]


def table_header(text: str) -> list[str]:
    [head] = [line for line in text.splitlines() if line.startswith("┃")]
    return [c.strip() for c in head.strip("┃").split("┃")]


# -- trial states ----------------------------------------------------------------------------


def test_trial_states_are_one_enum_and_the_tuple_is_unchanged():
    assert TRIAL_STATES == ("complete", "pruned", "failed", "running", "interrupted", "waiting")
    assert tuple(s.value for s in TrialState) == TRIAL_STATES
    assert TrialState("interrupted") is TrialState.INTERRUPTED
    with pytest.raises(ValueError):
        TrialState("done")


def test_finished_and_scored_states():
    assert FINISHED_STATES == {"complete", "pruned", "failed"}
    assert TrialState.finished() == FINISHED_STATES
    assert SCORED_STATES == {"complete", "pruned"}
    assert TrialState.scored() == SCORED_STATES
    assert SCORED_STATES < FINISHED_STATES
    assert isinstance(FINISHED_STATES, frozenset)
    # Records hold plain strings: they compare with the members and are found in the sets.
    rec = trial(0, state="pruned")
    assert type(rec.state) is str
    assert rec.state == TrialState.PRUNED and rec.state in FINISHED_STATES
    assert "running" not in FINISHED_STATES and "interrupted" not in FINISHED_STATES


def test_a_state_member_writes_as_its_value_everywhere():
    s = TrialState.COMPLETE
    assert str(s) == "complete" and f"{s}" == "complete" and f"[{s:>9}]" == "[ complete]"
    assert json.loads(to_json({"state": s, s: 1})) == {"state": "complete", "complete": 1}
    assert csv_text(["state"], [[s]]) == "state\ncomplete"
    assert value_text(s) == "complete"


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (NAN, "nan"),
        (0.5, "0.5"),
        (0.81254, "0.8125"),
        (2.0, "2"),
        (0.0, "0"),
        (0.000123456, "0.0001235"),
        (12, "12"),
        (True, "True"),
        ("gru", "gru"),
    ],
)
def test_value_text(value: Any, text: str):
    assert value_text(value) == text


def test_fixed_text_and_finite():
    assert fixed_text(0.5) == "0.5000"
    assert fixed_text(1.23456, 2) == "1.23"
    assert fixed_text(None) == "" and fixed_text(7) == "7"
    assert finite(NAN) is None and finite(float("inf")) is None and finite(-math.inf) is None
    assert finite(0.25) == 0.25 and finite(3) == 3 and finite("x") == "x" and finite(None) is None


def test_params_text_keeps_order_and_formats_values():
    text = params_text({"units": 8, "lr": 0.0031234, "cell": "lstm", "bi": False})
    assert text == "units=8 lr=0.003123 cell=lstm bi=False"


# -- JSON ------------------------------------------------------------------------------------


def test_to_json_writes_nan_as_null_and_datetimes_as_iso():
    obj = {
        "a": NAN,
        "b": [1.5, math.inf, {"c": -math.inf}],
        "t": (1, NAN),
        "when": START,
        "day": START.date(),
        "other": object.__new__(type("Thing", (), {"__str__": lambda self: "thing"})),
    }
    text = to_json(obj)
    assert not text.endswith("\n")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "a": None,
        "b": [1.5, None, {"c": None}],
        "t": [1, None],
        "when": "2024-05-06T07:08:09.123456",
        "day": "2024-05-06",
        "other": "thing",
    }
    assert text.startswith('{\n  "a": null,')


# -- CSV -------------------------------------------------------------------------------------


def test_csv_text_quotes_and_blanks():
    text = csv_text(
        ["name", "note", "when", "x"],
        [["a,b", 'say "hi"', START, None], ["line\nbreak", "", None, 1.5]],
    )
    assert not text.endswith("\n")
    assert text.splitlines()[1] == '"a,b","say ""hi""",2024-05-06T07:08:09.123456,'
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["name", "note", "when", "x"],
        ["a,b", 'say "hi"', "2024-05-06T07:08:09.123456", ""],
        ["line\nbreak", "", "", "1.5"],
    ]


def test_csv_text_with_no_rows_is_the_header():
    assert csv_text(["a", "b"], []) == "a,b"


# -- tables ----------------------------------------------------------------------------------


def test_table_text_aligns_numeric_columns_right():
    text = table_text(["trial", "cell"], [[1, "lstm"], [123, "gru"]])
    assert not text.endswith("\n")
    rows = table_lines(text)
    assert [table_cells(r) for r in rows] == [["1", "lstm"], ["123", "gru"]]
    first = rows[0].split("│")
    assert first[1].endswith("1 ") and first[1].strip() == "1"  # trial: right-aligned
    assert first[2].startswith(" lstm")  # cell: left-aligned
    assert "trial" in NUMERIC_COLUMNS and "cell" not in NUMERIC_COLUMNS


def test_table_text_with_own_cells_and_alignment():
    text = table_text(
        ["name", "score"],
        [["a", 0.5], ["b", None]],
        right={"score"},
        cell=lambda column, v: fixed_text(v, 1) if column == "score" else str(v).upper(),
    )
    assert [table_cells(r) for r in table_lines(text)] == [["A", "0.5"], ["B", ""]]


# -- trials ----------------------------------------------------------------------------------


def trials_sample() -> list[TrialRecord]:
    return [
        trial(
            0,
            value=0.8125,
            params={"units": 8, "cell": "lstm", "note": 'a,b "c"'},
            test_accuracy=0.79,
            test_loss=NAN,
        ),
        trial(
            3,
            state="failed",
            value=None,
            params={"cell": "gru", "lr": 0.001},
            duration_s=None,
            finished_at=None,
            reason="NaN loss",
        ),
        trial(5, state="pruned", value=NAN, epochs=1, duration_s=0.04),
    ]


def test_trials_json_unranked_and_ranked():
    ts = trials_sample()
    plain = json.loads(render_trials(ts, "json"))
    assert [t["number"] for t in plain] == [0, 3, 5]
    assert "rank" not in plain[0]
    assert plain[0]["params"] == {"units": 8, "cell": "lstm", "note": 'a,b "c"'}
    assert plain[0]["started_at"] == "2024-05-06T07:08:09.123456"
    assert plain[0]["test_accuracy"] == 0.79 and plain[0]["test_loss"] is None
    assert plain[1]["finished_at"] is None and plain[1]["reason"] == "NaN loss"
    assert plain[2]["value"] is None  # NaN
    ranked = json.loads(render_trials(ts, "json", ranked=True))
    assert [t["rank"] for t in ranked] == [1, 2, 3]
    assert list(ranked[0])[0] == "rank"
    assert {k: v for k, v in ranked[0].items() if k != "rank"} == plain[0]
    assert trial_dict(ts[2], rank=7)["rank"] == 7 and trial_dict(ts[2])["value"] is None


def test_trials_csv_columns_and_quoting():
    text = render_trials(trials_sample(), "csv")
    assert csv_header(text) == [
        "trial",
        "state",
        "value",
        "epochs_trained",
        "duration_s",
        "cell",
        "lr",
        "note",
        "units",
    ]
    rows = read_csv(text)
    assert rows[0] == {
        "trial": "0",
        "state": "complete",
        "value": "0.8125",
        "epochs_trained": "2",
        "duration_s": "12.345",
        "cell": "lstm",
        "lr": "",
        "note": 'a,b "c"',
        "units": "8",
    }
    assert rows[1]["value"] == "" and rows[1]["duration_s"] == "" and rows[1]["lr"] == "0.001"
    assert rows[2]["value"] == "nan"
    assert '"a,b ""c"""' in text


def test_trials_csv_ranked_with_test_metrics():
    text = render_trials(trials_sample(), "csv", ranked=True, with_test=True)
    assert csv_header(text)[:8] == [
        "rank",
        "trial",
        "state",
        "value",
        "epochs_trained",
        "duration_s",
        "test_accuracy",
        "test_loss",
    ]
    rows = read_csv(text)
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["test_accuracy"] == "0.79" and rows[0]["test_loss"] == "nan"
    assert rows[1]["test_accuracy"] == ""


def test_trials_table():
    text = render_trials(trials_sample(), "table", ranked=True, with_test=True)
    assert table_header(text) == [
        "rank",
        "trial",
        "state",
        "value",
        "epochs_trained",
        "duration_s",
        "test_accuracy",
        "test_loss",
        "params",
    ]
    rows = [table_cells(r) for r in table_lines(text)]
    assert rows[0] == [
        "1",
        "0",
        "complete",
        "0.8125",
        "2",
        "12.3",
        "0.79",
        "nan",
        'units=8 cell=lstm note=a,b "c"',
    ]
    assert rows[1][:6] == ["2", "3", "failed", "", "2", ""]
    assert rows[2][3] == "nan" and rows[2][5] == "0"  # 0.04 s rounds to 0.0
    unranked = render_trials(trials_sample(), "table")
    assert table_header(unranked) == [
        "trial", "state", "value", "epochs_trained", "duration_s", "params"
    ]  # fmt: skip


def test_no_trials():
    assert json.loads(render_trials([], "json")) == []
    assert render_trials([], "csv") == "trial,state,value,epochs_trained,duration_s"
    assert table_lines(render_trials([], "table")) == []


# -- studies ---------------------------------------------------------------------------------


def test_study_count_states_are_the_trial_states_but_waiting():
    assert STUDY_COUNT_STATES == ("complete", "pruned", "failed", "running", "interrupted")


def test_studies_json_csv_and_table():
    rows = [study("a"), study("b, the second", best_value=NAN, engine=None, created_at=None)]
    data = json.loads(render_studies(rows, "json"))
    assert data[0]["created_at"] == "2024-05-06T07:08:09.123456"
    assert data[0]["counts"] == {"complete": 3, "pruned": 1, "failed": 1, "interrupted": 2}
    assert data[1]["best_value"] is None and data[1]["engine"] is None

    text = render_studies(rows, "csv")
    header = [
        "study",
        "engine",
        "space",
        "data",
        "limit",
        "trials",
        "target",
        "complete",
        "pruned",
        "failed",
        "running",
        "interrupted",
        "best",
    ]
    assert csv_header(text) == header
    first, second = read_csv(text)
    assert first["trials"] == "7" and first["running"] == "0" and first["interrupted"] == "2"
    assert first["best"] == "0.875" and first["limit"] == "500"
    assert second["study"] == "b, the second" and second["engine"] == "" and second["best"] == "nan"

    table = render_studies(rows, "table")
    assert table_header(table) == header
    cells = [table_cells(r) for r in table_lines(table)]
    assert cells[0] == [
        "a",
        "optuna",
        "default",
        "imdb.npz",
        "500",
        "7",
        "10",
        "3",
        "1",
        "1",
        "0",
        "2",
        "0.875",
    ]
    assert cells[1][0] == "b, the second" and cells[1][-1] == "nan"


# -- the comparison of report ----------------------------------------------------------------


def test_comparison_table_fixed_decimals_and_blanks():
    group = GroupRow(
        cell="lstm",
        direction="forward",
        maxlen=40,
        trials=3,
        pruned=1,
        best_val_accuracy=0.8,
        median_val_accuracy=None,
        mean_epoch_s=1.23456,
        params_best=8176,
        params_median=8217,
        best_trial=2,
    )
    text = comparison_table([group])
    assert table_header(text)[:3] == ["cell", "direction", "maxlen"]
    [line] = table_lines(text)
    assert table_cells(line) == [
        "lstm",
        "forward",
        "40",
        "3",
        "1",
        "0.8000",
        "",
        "1.23",
        "8176",
        "8217",
        "2",
    ]
    parts = line.split("│")
    assert parts[1].startswith(" lstm")  # text left, numbers right
    assert parts[3].endswith("40 ") and parts[3].startswith("  ")


# -- export ----------------------------------------------------------------------------------

CURVE = [
    EpochRecord(1, loss=0.69, accuracy=0.51, val_loss=0.68, val_accuracy=0.6, seconds=1.0),
    EpochRecord(2, loss=0.6, accuracy=0.7, val_loss=0.65, val_accuracy=0.6, seconds=2.0),
    EpochRecord(3, loss=NAN, accuracy=0.72, val_loss=math.inf, val_accuracy=0.58, seconds=None),
]


def test_trial_row_best_and_final_epoch():
    row = trial_row(trial(4, test_loss=0.4, test_accuracy=NAN, param_count=999), CURVE)
    assert tuple(row) == METRIC_COLUMNS
    assert row["best_val_accuracy"] == 0.6 and row["best_epoch"] == 1  # ties: the earlier epoch
    assert row["final_loss"] is None and row["final_val_loss"] is None  # NaN, inf
    assert row["final_val_accuracy"] == 0.58
    assert row["mean_epoch_s"] == 1.5
    assert row["test_loss"] == 0.4 and row["test_accuracy"] is None
    assert row["started_at"] == "2024-05-06T07:08:09.123456"
    assert row["finished_at"] == "2024-05-06T07:09:19"
    empty = trial_row(trial(5, started_at=None, finished_at=None), [])
    assert empty["best_epoch"] is None and empty["final_loss"] is None
    assert empty["mean_epoch_s"] is None and empty["started_at"] is None


class _Trials:
    """What export reads from a database: trials, per-epoch rows and the study's id."""

    def __init__(self, trials: list[TrialRecord], curves: dict[int, list[EpochRecord]]):
        self._trials, self._curves = trials, curves

    def trials(self, study: str) -> list[TrialRecord]:
        return self._trials

    def study_id(self, study: str) -> int:
        return 1

    def epochs_by_trial(self, study_id: int) -> dict[int, list[EpochRecord]]:
        return self._curves


def export_sample() -> _Trials:
    t0 = trial(
        0,
        config={"cell": "lstm", "units": 8, "note": "x,y"},
        extra={"best_epoch": 1},
        engine="optuna",
    )
    t1 = trial(
        1,
        state="failed",
        value=None,
        config={"units": 4, "dropout": 0.1, "cell": "gru"},
        reason='diverged: loss "nan"',
    )
    return _Trials([t0, t1], {t0.trial_id: CURVE})


def test_export_csv_header_order_and_cells():
    records = export_records(export_sample(), "s")  # type: ignore[arg-type]
    text = export_csv(records)
    assert text.endswith("\n") and not text.endswith("\n\n")
    header = csv_header(text)
    assert header == [*METRIC_COLUMNS, "cell", "units", "note", "dropout"]
    first, second = read_csv(text)
    assert first["note"] == "x,y" and first["dropout"] == "" and first["best_epoch"] == "1"
    assert first["final_loss"] == ""  # NaN
    assert second["state"] == "failed" and second["value"] == "" and second["cell"] == "gru"
    assert second["reason"] == 'diverged: loss "nan"' and second["best_val_accuracy"] == ""
    assert export_study(export_sample(), "s", "csv") == text  # type: ignore[arg-type]


def test_export_json_curves_and_nan():
    records = export_records(export_sample(), "s")  # type: ignore[arg-type]
    text = export_json(records)
    assert text.endswith("}\n]\n")
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert [d["trial"] for d in data] == [0, 1]
    assert data[0]["engine"] == "optuna" and data[0]["extra"] == {"best_epoch": 1}
    assert data[0]["params"] == {"cell": "lstm", "units": 8}
    assert data[0]["curve"][0] == {
        "epoch": 1,
        "loss": 0.69,
        "accuracy": 0.51,
        "val_loss": 0.68,
        "val_accuracy": 0.6,
        "seconds": 1.0,
    }
    assert data[0]["curve"][2]["loss"] is None and data[0]["curve"][2]["val_loss"] is None
    assert data[1]["curve"] == [] and data[1]["config"]["dropout"] == 0.1
    assert export_study(export_sample(), "s", "json") == text  # type: ignore[arg-type]


def test_export_of_no_trials():
    empty = _Trials([], {})
    assert export_study(empty, "s", "csv") == ",".join(METRIC_COLUMNS) + "\n"  # type: ignore[arg-type]
    assert export_study(empty, "s", "json") == "[]\n"  # type: ignore[arg-type]
