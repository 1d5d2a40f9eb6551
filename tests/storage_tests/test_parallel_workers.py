"""Many workers on one study: the trial budget holds exactly, with no lock errors.

Four processes run the real Optuna engine (search.engines.optuna_engine.OptunaEngine: atomic slot
claims, Optuna's ask and tell) with a fast stand-in for training, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import traceback

import optuna
import pytest
import sqlalchemy as sa

from storage import StudyConfig, StudyDatabase

TARGET = 100
WORKERS = 4


SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}


def _worker(url: str, queue) -> None:
    try:
        from search.engines.optuna_engine import OptunaEngine
        from search.plan import RunRequest, resolve_plan
        from search.trials import TrialOutcome
        from storage import TrialState

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        db = StudyDatabase(url)
        stored = db.study_config("par")
        plan = resolve_plan(
            RunRequest(study="par", resume_only=True, join_only=True),
            stored,
            exists=True,
            finished=0,
            trials_so_far=0,
            requested_space=None,
        )
        engine = OptunaEngine(
            db,
            plan,
            optuna.load_study(study_name="par", storage=db.optuna_storage),
            db.study_id("par"),
        )
        ran = 0
        while (order := engine.next_trial()) is not None:
            time.sleep(random.uniform(0.0, 0.02))
            value = order.config["learning_rate"]
            engine.trial_finished(order, TrialOutcome(TrialState.COMPLETE, value, 1, 1))
            ran += 1
        queue.put(("ok", ran))
    except BaseException:  # noqa: BLE001 - report anything to the parent
        queue.put(("error", traceback.format_exc()))


def _space_json() -> str:
    from spaces import Space

    return Space.from_dict({"name": "stand-in", "dimensions": SPACE}).to_json()


@pytest.mark.slow
def test_four_workers_run_exactly_the_target(storage_url):
    db = StudyDatabase(storage_url)
    optuna.create_study(study_name="par", storage=db.optuna_storage, direction="maximize")
    sid = db.study_id("par")
    db.save_study_config(
        StudyConfig(
            name="par",
            study_id=sid,
            engine="optuna",
            space_name="stand-in",
            space_json=_space_json(),
            data={"source": "none"},
            seed=0,
            target_trials=TARGET,
        )
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(storage_url, queue)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r[1] for r in results if r[0] == "error"]
    assert not errors, errors[0]
    ran = [r[1] for r in results]
    assert sum(ran) == TARGET
    assert sum(1 for r in ran if r > 0) >= 2, f"the work was not shared: {ran}"
    trials = db.trials("par")
    assert len(trials) == TARGET
    assert sorted(t.number for t in trials) == list(range(TARGET))
    assert all(t.state == "complete" for t in trials)
    db.dispose()


def _at_once(count: int, work) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; the exceptions they raised."""
    import threading

    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.postgres
def test_processes_opening_a_new_postgres_database_at_once_all_open_it(postgres_url):
    """Workers started together on an empty PostgreSQL schema each create the tables they find
    missing; without the schema lock PostgreSQL refused all but the first ("duplicate key value
    violates unique constraint pg_type_typname_nsp_index")."""
    from storage import StudyDatabase

    def open_both_schemas(_: int) -> None:
        db = StudyDatabase(postgres_url)
        try:
            db.optuna_storage.get_all_studies()
        finally:
            db.dispose()

    for _ in range(3):  # a race: a few rounds, each on a fresh schema
        errors = _at_once(4, open_both_schemas)
        assert errors == [], [str(e) for e in errors]
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()


def test_processes_starting_one_new_study_at_once_agree_on_its_identity(storage_url):
    """Each of several processes starting the same new study proposes an identity; exactly one
    is kept and every process is told that one, so their files share one folder (before, each
    kept its own, and one's checkpoints were recorded under an identity the study lacked)."""
    import optuna

    from storage import StudyDatabase

    StudyDatabase(storage_url).dispose()  # the tables exist; the race is the identity
    setup = StudyDatabase(storage_url)
    optuna.create_study(study_name="s", storage=setup.optuna_storage)
    study_id = setup.study_id("s")
    setup.dispose()
    told: dict[int, str] = {}

    def claim(i: int) -> None:
        db = StudyDatabase(storage_url)
        try:
            told[i] = db.claim_study_uid(study_id, f"proposed-by-{i}")
        finally:
            db.dispose()

    assert _at_once(4, claim) == []
    assert len(set(told.values())) == 1
    check = StudyDatabase(storage_url)
    try:
        assert check.study_config("s") is None
        assert check._study_uid(study_id) == told[0]
        attrs = optuna.load_study(study_name="s", storage=check.optuna_storage).user_attrs
        assert list(attrs.values()).count(told[0]) == 1
    finally:
        check.dispose()
