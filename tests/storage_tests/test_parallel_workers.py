"""Many workers on one study: the trial budget holds exactly, with no lock errors.

Four processes run the real worker loop (search.worker.run_loop: atomic slot claims, Optuna's
optimize, heartbeats) with a fast stand-in objective, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import traceback

import optuna
import pytest

from storage import StudyConfig, StudyDatabase

TARGET = 100
WORKERS = 4


def _worker(url: str, queue) -> None:
    try:
        from search.worker import run_loop

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        db = StudyDatabase(url)
        study = optuna.load_study(study_name="par", storage=db.optuna_storage)
        sid = db.study_id("par")

        def objective(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", 0.0, 1.0)
            time.sleep(random.uniform(0.0, 0.02))
            return x

        ran = run_loop(db, study, sid, objective)
        queue.put(("ok", ran))
    except BaseException:  # noqa: BLE001 - report anything to the parent
        queue.put(("error", traceback.format_exc()))


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
            space_json="{}",
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
