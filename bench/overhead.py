"""Service overhead per trial, and `best` latency on a study of 10,000 trials (issue 9, item 3).

    python bench/overhead.py           # 10 trials for overhead; 10,000-trial study for `best`
    python bench/overhead.py --quick   # 2 trials; 1,000-trial study

Overhead of a trial = its wall time minus the time spent inside Keras' `fit` call (its epochs
plus Keras' own set-up and tear-down, which a plain loop pays too); the time outside the epochs
alone is reported as well. Overhead holds data lookup, model building, clearing the session,
per-epoch checkpoints, database writes, Optuna's sampling, pruning and heartbeat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, table, write_result  # noqa: E402

SPACE = """
name = "bench-overhead"
[dimensions]
cell = "gru"
units = { low = 16, high = 32, step = 16 }
maxlen = 100
embedding_dim = 16
vocab_size = 5000
batch_size = 64
"""


def service_overhead(trials: int, limit: int, epochs: int, *, freeze: bool = True) -> dict:
    """``freeze=False``: as before this round, the garbage collector scanning every object of
    TensorFlow, Keras and Optuna at each trial's ``clear_session(free_memory=True)``."""
    import contextlib

    from search import tfenv
    from search.service import RunRequest, run_search
    from storage import StudyDatabase

    saved = tfenv.startup_objects_frozen
    if not freeze:
        tfenv.startup_objects_frozen = contextlib.nullcontext
    try:
        with tempfile.TemporaryDirectory() as tmp:
            space = Path(tmp) / "s.toml"
            space.write_text(SPACE)
            url = f"sqlite:///{tmp}/o.db"
            run_search(
                RunRequest(
                    study="o",
                    storage=url,
                    space=str(space),
                    trials=trials,
                    data=str(IMDB_NPZ),
                    limit=limit,
                    max_epochs=epochs,
                    seed=0,
                )
            )
            db = StudyDatabase(url)
            rows = []
            for t in db.trials("o"):
                epochs = sum(e.seconds or 0 for e in db.epochs(t.trial_id))
                rows.append((t.duration_s, epochs, t.extra.get("fit_seconds", epochs)))
            db.dispose()
    finally:
        tfenv.startup_objects_frozen = saved
    # Two readings: outside the epochs (Keras' own set-up and tear-down of fit counted as
    # overhead), and outside the `fit` call (what rnnsearch itself adds around Keras).
    share_epochs = [(w - e) / w for w, e, _ in rows]
    share_fit = [(w - f) / w for w, _, f in rows]
    return {
        "mode": "after" if freeze else "before (no gc.freeze)",
        "trials": len(rows),
        "mean_trial_s": statistics.mean(w for w, _, _ in rows),
        "mean_overhead_s": statistics.mean(w - f for w, _, f in rows),
        "median_overhead_share": statistics.median(share_fit),
        "max_overhead_share": max(share_fit),
        "mean_outside_epochs_s": statistics.mean(w - e for w, e, _ in rows),
        "median_outside_epochs_share": statistics.median(share_epochs),
    }


def generate_study(url: str, n: int) -> None:
    """A study of n finished trials, written in bulk through Optuna's own API."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from storage import StudyConfig, StudyDatabase

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    db = StudyDatabase(url)
    study = optuna.create_study(study_name="big", storage=db.optuna_storage, direction="maximize")
    sid = db.study_id("big")
    db.save_study_config(
        StudyConfig(
            name="big",
            study_id=sid,
            engine="optuna",
            space_name="x",
            space_json="{}",
            data={"source": "none"},
            seed=0,
            target_trials=n,
        )
    )
    dists = {
        "cell": CategoricalDistribution(["simple", "lstm", "gru"]),
        "units": IntDistribution(16, 256, log=True),
        "dropout": FloatDistribution(0.0, 0.5),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        "bidirectional": CategoricalDistribution([False, True]),
    }
    import random

    rng = random.Random(0)
    batch = []
    for i in range(n):
        params = {
            "cell": rng.choice(["simple", "lstm", "gru"]),
            "units": rng.randint(16, 256),
            "dropout": rng.random() / 2,
            "learning_rate": 10 ** rng.uniform(-4, -2),
            "bidirectional": rng.random() < 0.5,
        }
        batch.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=rng.random(),
                intermediate_values={1: rng.random(), 2: rng.random()},
            )
        )
        if len(batch) == 500 or i == n - 1:
            study.add_trials(batch)
            batch = []
    # rnnsearch's own rows, in bulk
    from sqlalchemy import insert, select

    from storage.schema import EpochMetricRow, TrialInfoRow

    trials = db.optuna_storage.get_all_trials(sid, deepcopy=False)
    now = __import__("datetime").datetime.now()
    with db.session() as s:
        s.execute(
            insert(TrialInfoRow),
            [
                {
                    "trial_id": t._trial_id,
                    "study_id": sid,
                    "number": t.number,
                    "engine": "optuna",
                    "config": dict(t.params),
                    "status": "complete",
                    "wall_seconds": 10.0,
                    "epochs_trained": 2,
                    "versions": {},
                    "extra": {},
                    "updated_at": now,
                }
                for t in trials
            ],
        )
        s.execute(
            insert(EpochMetricRow),
            [
                {
                    "trial_id": t._trial_id,
                    "epoch": e,
                    "study_id": sid,
                    "loss": 0.5,
                    "accuracy": 0.7,
                    "val_loss": 0.6,
                    "val_accuracy": 0.7,
                    "seconds": 5.0,
                    "recorded_at": now,
                }
                for t in trials
                for e in (1, 2)
            ],
        )
        assert s.execute(select(TrialInfoRow.trial_id).limit(1)).scalar() is not None
    db.dispose()


def best_latency(n: int, repeats: int = 5) -> dict:
    from typer.testing import CliRunner

    from search.cli import app
    from storage import StudyDatabase

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/big.db"
        started = time.perf_counter()
        generate_study(url, n)
        generated = time.perf_counter() - started
        db = StudyDatabase(url)
        fn = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            top = db.best("big", top=10)
            fn.append(time.perf_counter() - t0)
        assert len(top) == 10
        db.dispose()
        cli = []
        runner = CliRunner()
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = runner.invoke(
                app, ["best", "big", "--top", "10", "--format", "json", "--storage", url]
            )
            cli.append(time.perf_counter() - t0)
            assert result.exit_code == 0, result.output
        # A fresh `rnnsearch best` process: Python start-up and imports included.
        import subprocess

        from common import RNNSEARCH

        proc = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(
                [RNNSEARCH, "best", "big", "--top", "10", "--format", "json", "--storage", url],
                check=True,
                capture_output=True,
            )
            proc.append(time.perf_counter() - t0)
    return {
        "trials": n,
        "generate_s": round(generated, 1),
        "best_fn_ms_median": round(statistics.median(fn) * 1000, 1),
        "best_cli_in_process_ms_median": round(statistics.median(cli) * 1000, 1),
        "best_cli_process_ms_median": round(statistics.median(proc) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    trials, limit, epochs, n = (2, 600, 1, 1000) if args.quick else (10, 5000, 2, 10_000)
    service_overhead(1, limit, 1)  # warm-up: TensorFlow's first graphs, the data's arrays
    before = service_overhead(trials, limit, epochs, freeze=False)
    over = service_overhead(trials, limit, epochs)
    print(table(list(over), [list(before.values()), list(over.values())]))
    lat = best_latency(n)
    print(table(list(lat), [list(lat.values())]))
    path = write_result(
        "overhead-quick" if args.quick else "overhead",
        {
            "overhead": over,
            "overhead_before": before,
            "best_latency": lat,
            "targets": {"overhead_share": 0.02, "best_ms": 300},
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
