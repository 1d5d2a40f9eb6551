"""A study's identity: issued once, tied to the Optuna study, orphans of deleted studies ignored
and purged, artefacts recorded; against SQLite and PostgreSQL."""

from __future__ import annotations

import optuna
import pytest

from storage import StudyConfig, StudyDatabase


def _config(db: StudyDatabase, name: str) -> StudyConfig:
    return StudyConfig(
        name=name,
        study_id=db.study_id(name),
        engine="optuna",
        space_name="s",
        space_json="{}",
        data={"source": "d.npz"},
        seed=1,
        target_trials=3,
    )


def _trial_with_epochs(db: StudyDatabase, study: optuna.Study, epochs: int) -> int:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    sid = db.study_id(study.study_name)
    tid = db.optuna_storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
    db.record_trial_info(
        trial_id=tid,
        study_id=sid,
        number=trial.number,
        engine="optuna",
        config={},
        status="running",
    )
    for e in range(1, epochs + 1):
        db.record_epoch(
            trial_id=tid, study_id=sid, epoch=e, metrics={"val_accuracy": 0.5}, seconds=1.0
        )
    study.tell(trial, 0.5)
    return tid


def test_a_study_gets_one_identity_tied_to_its_optuna_study(storage_url):
    db = StudyDatabase(storage_url)
    study = optuna.create_study(study_name="a", storage=db.optuna_storage)
    saved = db.save_study_config(_config(db, "a"))
    assert saved.uid and len(saved.uid) == 36
    assert db.study_config("a").uid == saved.uid
    assert (
        optuna.load_study(study_name="a", storage=db.optuna_storage).user_attrs["rnnsearch_uid"]
        == saved.uid
    )
    # saving again keeps it
    assert db.save_study_config(_config(db, "a")).uid == saved.uid
    assert study.study_name == "a"
    db.dispose()


def test_a_deleted_and_recreated_study_inherits_nothing(storage_url):
    db = StudyDatabase(storage_url)
    old = optuna.create_study(study_name="x", storage=db.optuna_storage)
    first = db.save_study_config(_config(db, "x"))
    _trial_with_epochs(db, old, 3)
    db.record_artefact(first.uid, "checkpoint", "/nonexistent/lineage-00000", lineage=0)
    # Optuna's own CLI deletes the study; a plain Optuna study of the same name follows.
    optuna.delete_study(study_name="x", storage=db.optuna_storage)
    plain = optuna.create_study(study_name="x", storage=db.optuna_storage)
    assert db.study_config("x") is None  # not rnnsearch's: the old row is an orphan
    assert [s.name for s in db.studies()] == ["x"] and db.studies()[0].engine is None
    # rnnsearch takes the study over: a new identity, and no row of the old one survives
    second = db.save_study_config(_config(db, "x"))
    assert second.uid != first.uid
    assert db.artefacts(first.uid) == []
    tid = _trial_with_epochs(db, plain, 1)
    [t] = db.trials("x")
    assert t.trial_id == tid and t.epochs == 1
    assert [e.epoch for e in db.epochs(tid)] == [1]
    db.dispose()


def test_delete_study_removes_its_rows_and_artefact_records_only(storage_url):
    db = StudyDatabase(storage_url)
    keep = optuna.create_study(study_name="keep", storage=db.optuna_storage)
    gone = optuna.create_study(study_name="gone", storage=db.optuna_storage)
    kept = db.save_study_config(_config(db, "keep"))
    dropped = db.save_study_config(_config(db, "gone"))
    _trial_with_epochs(db, keep, 2)
    _trial_with_epochs(db, gone, 2)
    db.record_artefact(kept.uid, "checkpoint", "/k", lineage=0)
    db.record_artefact(dropped.uid, "checkpoint", "/g", lineage=0)
    db.delete_study("gone")
    assert [s.name for s in db.studies()] == ["keep"]
    assert len(db.trials("keep")) == 1 and db.trials("keep")[0].epochs == 2
    assert [a.path for a in db.artefacts(kept.uid)] == ["/k"]
    assert db.artefacts(dropped.uid) == []
    with pytest.raises(Exception, match="no study named 'gone'"):
        db.study_id("gone")
    db.dispose()


def test_artefacts_are_recorded_once_per_path(storage_url):
    db = StudyDatabase(storage_url)
    optuna.create_study(study_name="a", storage=db.optuna_storage)
    uid = db.save_study_config(_config(db, "a")).uid
    one = db.record_artefact(uid, "checkpoint", "/p", lineage=3)
    two = db.record_artefact(uid, "checkpoint", "/p", lineage=3)
    assert one.id == two.id and one.lineage == 3
    db.forget_artefacts([one.id])
    assert db.artefacts(uid) == []
    db.dispose()
