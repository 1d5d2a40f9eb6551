"""The study database contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from storage import (
    NotAStudyDatabaseError,
    StorageURLError,
    StudyConfig,
    StudyDatabase,
    StudyNotFoundError,
)
from storage.schema import SCHEMA_VERSION


def _make_study(db: StudyDatabase, name: str = "s") -> tuple[optuna.Study, int]:
    study = optuna.create_study(study_name=name, storage=db.optuna_storage, direction="maximize")
    return study, db.study_id(name)


def _add_trial(db, study, sid, *, value, epochs, seconds, state="complete", cell="lstm"):
    dist = {"cell": optuna.distributions.CategoricalDistribution(["simple", "lstm", "gru"])}
    trial = study.ask(dist)
    tid = db.optuna_storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
    db.record_trial_info(
        trial_id=tid,
        study_id=sid,
        number=trial.number,
        engine="optuna",
        config={"cell": cell, "units": 8},
        status="running",
    )
    for e in range(1, epochs + 1):
        db.record_epoch(
            trial_id=tid,
            study_id=sid,
            epoch=e,
            seconds=1.0,
            metrics={"loss": 1.0 / e, "accuracy": 0.5, "val_loss": 0.9, "val_accuracy": value},
        )
        trial.report(value, e)
    db.record_trial_info(
        trial_id=tid,
        study_id=sid,
        number=trial.number,
        engine="optuna",
        config={"cell": cell, "units": 8},
        status=state,
        wall_seconds=seconds,
    )
    if state == "complete":
        study.tell(trial, value)
    elif state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return trial.number


def test_new_database_gets_both_schemas(storage_url):
    db = StudyDatabase(storage_url)
    _make_study(db)
    tables = set(sa.inspect(db.engine).get_table_names())
    assert {"studies", "trials", "version_info"} <= tables
    assert {"rnnsearch_meta", "rnnsearch_trials", "rnnsearch_epochs", "rnnsearch_studies"} <= tables
    with db.engine.connect() as conn:
        version = conn.execute(sa.text("select value from rnnsearch_meta")).scalar()
    assert int(version) == SCHEMA_VERSION
    db.dispose()


def test_epochs_and_trial_info_round_trip(storage_url):
    db = StudyDatabase(storage_url)
    study, sid = _make_study(db)
    n = _add_trial(db, study, sid, value=0.8, epochs=3, seconds=12.5)
    [t] = db.trials("s")
    assert (t.number, t.state, t.value, t.epochs, t.duration_s) == (n, "complete", 0.8, 3, 12.5)
    assert t.params == {"cell": "simple"} or t.params["cell"] in ("simple", "lstm", "gru")
    assert t.config == {"cell": "lstm", "units": 8}
    epochs = db.epochs(t.trial_id)
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[2].loss == pytest.approx(1 / 3)
    # Recording an epoch again overwrites it: no duplicates.
    db.record_epoch(trial_id=t.trial_id, study_id=sid, epoch=3, metrics={"loss": 0.1}, seconds=2.0)
    assert [e.epoch for e in db.epochs(t.trial_id)] == [1, 2, 3]
    assert db.epochs(t.trial_id)[2].loss == pytest.approx(0.1)
    db.dispose()


def test_best_orders_by_value_then_epochs_then_time(storage_url):
    db = StudyDatabase(storage_url)
    study, sid = _make_study(db)
    a = _add_trial(db, study, sid, value=0.7, epochs=3, seconds=10)
    b = _add_trial(db, study, sid, value=0.9, epochs=3, seconds=10)
    c = _add_trial(db, study, sid, value=0.9, epochs=2, seconds=30)
    d = _add_trial(db, study, sid, value=0.9, epochs=2, seconds=20)
    _add_trial(db, study, sid, value=0.99, epochs=1, seconds=1, state="pruned")
    _add_trial(db, study, sid, value=0.99, epochs=1, seconds=1, state="failed")
    assert [t.number for t in db.best("s", top=10)] == [d, c, b, a]
    assert [t.number for t in db.best("s", top=2)] == [d, c]
    # The top-th value is a tie: every tied trial is a candidate, ordered by epochs and time.
    assert [t.number for t in db.best("s", top=1)] == [d]
    assert [t.number for t in db.best("s", top=4)] == [d, c, b, a]
    only = db.best("s", top=10, predicate=lambda cfg: cfg["cell"] == "gru")
    assert only == []
    db.dispose()


def test_studies_lists_counts_and_config(storage_url):
    db = StudyDatabase(storage_url)
    study, sid = _make_study(db, "alpha")
    db.save_study_config(
        StudyConfig(
            name="alpha",
            study_id=sid,
            engine="optuna",
            space_name="default",
            space_json="{}",
            data={"source": "imdb"},
            seed=7,
            target_trials=5,
        )
    )
    _add_trial(db, study, sid, value=0.6, epochs=1, seconds=1)
    _add_trial(db, study, sid, value=0.5, epochs=1, seconds=1, state="pruned")
    _add_trial(db, study, sid, value=0.5, epochs=1, seconds=1, state="failed")
    [rec] = db.studies()
    assert rec.name == "alpha" and rec.engine == "optuna" and rec.target_trials == 5
    assert rec.counts["complete"] == 1 and rec.counts["pruned"] == 1 and rec.counts["failed"] == 1
    assert rec.best_value == pytest.approx(0.6)
    cfg = db.study_config("alpha")
    assert cfg is not None and cfg.seed == 7 and cfg.data == {"source": "imdb"}
    db.dispose()


def test_missing_study_names_the_known_ones(storage_url):
    db = StudyDatabase(storage_url)
    _make_study(db, "present")
    with pytest.raises(StudyNotFoundError, match="no study named 'absent'.*present"):
        db.trials("absent")
    db.dispose()


def test_interrupted_trials_are_reported_as_such(storage_url):
    db = StudyDatabase(storage_url)
    study, sid = _make_study(db)
    n = _add_trial(db, study, sid, value=0.5, epochs=1, seconds=1, state="failed")
    tid = db.optuna_storage.get_trial_id_from_study_id_trial_number(sid, n)
    db.record_trial_info(
        trial_id=tid,
        study_id=sid,
        number=n,
        engine="optuna",
        config={"cell": "lstm"},
        status="interrupted",
    )
    assert [t.state for t in db.trials("s")] == ["interrupted"]
    assert db.trials("s", ["failed"]) == []
    assert db.studies()[0].counts["interrupted"] == 1
    db.dispose()


def test_spent_seconds_sums_the_trials_that_are_not_running(storage_url):
    """What --time-budget counts: rnnsearch's wall time of finished, failed and interrupted
    trials, Optuna's start-to-end for a trial of plain Optuna, and nothing of a running one;
    the same sum as the durations `trials` reports."""
    db = StudyDatabase(storage_url)
    study, sid = _make_study(db)
    _add_trial(db, study, sid, value=0.8, epochs=2, seconds=10.5)
    _add_trial(db, study, sid, value=0.6, epochs=1, seconds=4.0, state="pruned")
    _add_trial(db, study, sid, value=0.5, epochs=1, seconds=2.25, state="failed")
    plain = study.ask()  # a trial of plain Optuna, no rnnsearch row: Optuna's timestamps
    study.tell(plain, 0.7)
    running = study.ask()
    db.record_trial_info(
        trial_id=db.optuna_storage.get_trial_id_from_study_id_trial_number(sid, running.number),
        study_id=sid,
        number=running.number,
        engine="optuna",
        config={"cell": "gru"},
        status="running",
        wall_seconds=1000.0,
    )
    records = db.trials("s")
    assert [t.state for t in records] == ["complete", "pruned", "failed", "complete", "running"]
    plain_seconds = records[3].duration_s
    assert plain_seconds is not None and 0 <= plain_seconds < 5
    assert db.spent_seconds("s") == pytest.approx(10.5 + 4.0 + 2.25 + plain_seconds)
    assert db.spent_seconds("s") == pytest.approx(
        sum(t.duration_s or 0 for t in records if t.state != "running")
    )
    db.dispose()


def test_stale_running_trials_follow_optunas_heartbeat_rule(storage_url, silence_heartbeat):
    """A running trial is stale once its heartbeat is older than the grace period; one that
    beats, one not yet beating and finished trials are not. The same set as Optuna's own
    check, and readable on a read-only connection (what `delete` asks before refusing)."""
    from storage.database import GRACE_PERIOD

    db = StudyDatabase(storage_url)
    study, sid = _make_study(db)
    _add_trial(db, study, sid, value=0.8, epochs=1, seconds=1.0)
    fresh, old, silent = study.ask(), study.ask(), study.ask()
    tid = {
        t.number: db.optuna_storage.get_trial_id_from_study_id_trial_number(sid, t.number)
        for t in (fresh, old, silent)
    }
    db.optuna_storage.record_heartbeat(tid[fresh.number])
    db.optuna_storage.record_heartbeat(tid[old.number])
    silence_heartbeat(storage_url, tid[old.number], GRACE_PERIOD + 60)  # a process gone
    assert db.stale_running_trial_ids("s") == {tid[old.number]}
    assert set(db.optuna_storage._get_stale_trial_ids(sid)) == {tid[old.number]}
    reader = StudyDatabase(storage_url, create=False, read_only=True)
    try:
        assert reader.stale_running_trial_ids("s") == {tid[old.number]}
    finally:
        reader.dispose()
    study.tell(old, 0.5)  # finished: no longer stale, whatever its last beat
    assert db.stale_running_trial_ids("s") == set()
    db.dispose()


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u@h/db", "names a 'mysql' database"),
        ("not a url", "malformed"),
    ],
)
def test_bad_urls_are_refused(url, message):
    with pytest.raises(StorageURLError, match=message):
        StudyDatabase(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://u:s3cret-pw@127.0.0.1:5432/test",  # a driver not installed
        "postgresql://u:s3cret-pw@127.0.0.1:99999/test",  # a port out of range
        "postgresql://u:s3cret-pw@127.0.0.1:5432/test?bogus=1",  # an option libpq lacks
        "postgresql://u:s3cret-pw@[::1:5432/test",  # no URL SQLAlchemy can parse
    ],
)
def test_a_refused_url_never_shows_its_password(url):
    with pytest.raises(StorageURLError) as refused:
        StudyDatabase(url)
    assert "s3cret" not in str(refused.value) and "u:***@" in str(refused.value)


def test_non_sqlite_file_is_refused_and_untouched(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_text("my notes, not a database\n")
    with pytest.raises(NotAStudyDatabaseError, match="not an SQLite file"):
        StudyDatabase(f"sqlite:///{path}")
    assert path.read_text() == "my notes, not a database\n"


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path: Path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table customers (id integer primary key, name text)")
        conn.execute("insert into customers values (1, 'Ada')")
    before = path.read_bytes()
    with pytest.raises(NotAStudyDatabaseError, match="holds other tables: customers"):
        StudyDatabase(f"sqlite:///{path}")
    assert path.read_bytes() == before


@pytest.mark.postgres
def test_foreign_postgres_database_is_refused(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table invoices (id int)"))
    engine.dispose()
    with pytest.raises(NotAStudyDatabaseError, match="invoices"):
        StudyDatabase(postgres_url)


def test_read_commands_do_not_create_files(tmp_path: Path):
    path = tmp_path / "absent.db"
    with pytest.raises(StudyNotFoundError, match="no study database here"):
        StudyDatabase(f"sqlite:///{path}", create=False)
    assert not path.exists()


def test_sqlite_runs_in_wal_mode(sqlite_url):
    db = StudyDatabase(sqlite_url)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def test_env_var_sets_default_storage(tmp_path: Path, monkeypatch):
    from storage import resolve_url

    monkeypatch.setenv("RNNSEARCH_STORAGE", f"sqlite:///{tmp_path}/env.db")
    assert resolve_url(None) == f"sqlite:///{tmp_path}/env.db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.delenv("RNNSEARCH_STORAGE")
    assert resolve_url(None) == "sqlite:///rnnsearch.db"


def test_a_database_created_through_a_link_is_owner_only(tmp_path: Path):
    """A dangling link as the database path: its target is created owner-only, as any new
    database is (O_EXCL on the link itself failed, and SQLite made the file 0644)."""
    import os

    old = os.umask(0o022)
    try:
        (tmp_path / "study.db").symlink_to(tmp_path / "real.db")
        StudyDatabase(f"sqlite:///{tmp_path / 'study.db'}").dispose()
    finally:
        os.umask(old)
    assert (tmp_path / "real.db").stat().st_mode & 0o777 == 0o600
