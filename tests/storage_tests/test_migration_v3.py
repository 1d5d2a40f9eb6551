"""Schema 2 -> 3: a database written before per-trial figures gains their columns, keeps its rows,
and reads its old trials with empty figures (SQLite and PostgreSQL)."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa

from storage import StudyDatabase
from storage.migrations import TRIAL_FIGURE_COLUMNS
from storage.schema import SCHEMA_VERSION


def _v2_database(url: str) -> None:
    """A study database as schema 2 left it: one complete trial, no figure columns."""
    db = StudyDatabase(url)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="old", storage=db.optuna_storage, direction="maximize")
    trial = study.ask({"units": optuna.distributions.IntDistribution(1, 64)})
    sid = db.study_id("old")
    tid = db.optuna_storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
    db.record_trial_info(
        trial_id=tid,
        study_id=sid,
        number=trial.number,
        engine="optuna",
        config={"units": 8},
        status="complete",
        param_count=1234,
    )
    study.tell(trial, 0.75)
    with db.engine.begin() as conn:
        for column in TRIAL_FIGURE_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE rnnsearch_trials DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE rnnsearch_meta SET value = '2' WHERE key = 'schema_version'"))
    db.dispose()


@pytest.mark.parametrize("read_only", [False, True])
def test_schema_2_database_gains_the_figure_columns_and_keeps_its_trials(storage_url, read_only):
    _v2_database(storage_url)
    db = StudyDatabase(storage_url, create=not read_only)
    try:
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("rnnsearch_trials")}
        assert set(TRIAL_FIGURE_COLUMNS) <= columns
        with db.engine.connect() as conn:
            version = conn.execute(
                sa.text("select value from rnnsearch_meta where key = 'schema_version'")
            ).scalar()
        assert int(version) == SCHEMA_VERSION == 3
        [old] = db.trials("old")
        assert old.value == 0.75 and old.param_count == 1234 and old.values == (0.75,)
        assert old.latency_ms is None and old.model_mb is None and old.val_accuracy is None
    finally:
        db.dispose()
