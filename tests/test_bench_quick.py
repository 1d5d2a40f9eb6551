"""The benchmark scripts run in quick mode and write the figures they promise.

One class per script: the suite runs with ``--dist loadscope``, which keeps a module's functions
on one process but spreads classes, and these are the slowest tests (17-92 s each), collected
last."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench"
RESULTS = BENCH / "results"


def _run(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "written:" in out.stdout
    path = Path(out.stdout.strip().splitlines()[-1].split("written: ", 1)[1])
    assert path.parent == RESULTS
    return json.loads(path.read_text())


class TestTimeToAccuracy:
    def test_time_to_accuracy_quick(self):
        # The plain Keras Tuner search (maxlen 500, up to 512 units) cannot be sure to finish a
        # trial in a short budget on a machine running the suite beside it: its retraining runs
        # from a given configuration instead; the search itself is the benchmark's. One trial
        # of one epoch (the last --trials and --max-epochs win): the run ends when it is done,
        # and the budget is only a cap (the benchmark ends the run at its budget, trial or not:
        # a fixed 40 s was too short on a slow machine running the suite, 15 s on a quick one).
        res = _run(
            "time_to_accuracy.py",
            "--budget",
            "180",
            "--skip-plain",
            "--rnnsearch-args",
            "--max-epochs 1 --trials 1",
            "--plain-config",
            '{"cell": "gru", "units": 8, "lr": 0.001, "epochs": 1}',
        )
        assert res["rnnsearch"]["curve"] and res["rnnsearch"]["finished_trials"] >= 1, (
            "rnnsearch finished no trial in its budget"
        )
        test = res["rnnsearch"]["test"]
        # `rnnsearch retrain` of the best trial: the slice for training, the whole test set once
        assert 0.5 < test["test_accuracy"] <= 1 and test["test_examples"] == 25_000
        assert test["epochs"] == res["rnnsearch"]["best_epochs"]
        plain = res["plain"]["test"]
        assert 0 <= plain["test_accuracy"] <= 1 and plain["epochs"] == 1
        assert plain["test_examples"] == 2000


class TestOverhead:
    def test_overhead_quick(self):
        res = _run("overhead.py")
        assert res["overhead"]["trials"] == res["overhead_before"]["trials"] == 2
        assert 0 < res["overhead"]["mean_overhead_s"] < res["overhead"]["mean_trial_s"]
        assert (
            res["best_latency"]["trials"] == 1000 and res["best_latency"]["best_fn_ms_median"] > 0
        )


class TestMemory:
    def test_memory_quick(self):
        res = _run("memory.py")
        for mode in ("rnnsearch", "baseline"):
            rss = res["rss_mb_after_each_trial"][mode]
            assert len(rss) == 3 and all(r > 100 for r in rss)


class TestPerEpoch:
    def test_per_epoch_quick(self):
        # one configuration of three: each mode is a process that loads TensorFlow
        res = _run("per_epoch.py", "--configs", "simple32-len100")
        [row] = res["table"]
        # config, plain / before / rnnsearch seconds per epoch, two ratios, three accuracies
        assert all(s > 0 for s in row[1:4]) and all(0 <= a <= 1 for a in row[6:9])
        # the ratio is that of the mean epochs after the first (one epoch in quick mode), as
        # the raw epochs say (the table rounds to 0.01)
        per = res["epochs"][row[0]]
        steady = {
            mode: statistics.mean(e["seconds"] for run in runs for e in (run[1:] or run[:1]))
            for mode, runs in per.items()
        }
        assert abs(row[5] - steady["rnnsearch"] / steady["plain"]) <= 0.0051


class TestWorkers:
    def test_workers_quick(self):
        res = _run("workers.py")
        assert [r["workers"] for r in res["rows"]] == [1, 2]
        assert all(r["trials"] == 2 for r in res["rows"])


class TestBucketing:
    def test_bucketing_quick(self):
        res = _run("bucketing.py")
        rows = {row[1]: row for row in res["table"]}
        assert set(rows) == {"fixed", "bucketing"}
        for row in rows.values():
            assert row[2] > 0 and row[3] > 0 and 0 <= row[5] <= 1 and 0 <= row[6] <= 1
        # bucketing computes fewer steps per review than padding every review to maxlen
        assert rows["bucketing"][7] < rows["fixed"][7] == 200


class TestCompiledSteps:
    def test_compiled_steps_quick(self):
        # one configuration, JAX with each step's activations stored and recomputed
        res = _run(
            "compiled_steps.py",
            "--configs",
            "lstm64-len500",
            "--modes",
            "rnnsearch-jax-stored",
            "rnnsearch-jax",
        )
        rows = {r[1]: r for r in res["table"]}
        assert list(rows) == ["plain", "rnnsearch-jax-stored", "rnnsearch-jax"]
        runs = res["runs"]["lstm64-len500"]
        recomputed = {m: [r["extra"].get("recomputed_steps") for r in runs[m]] for m in rows}
        assert recomputed == {
            "plain": [None],
            "rnnsearch-jax-stored": [False],
            "rnnsearch-jax": [True],
        }
        assert all(r["extra"]["backend"] == "jax" for m in rows if m != "plain" for r in runs[m])
        for mode, row in rows.items():
            assert row[2] > 0 and 0 <= row[7] <= 1
            # compilations are counted under JAX: a trial trains on a few widths
            assert mode == "plain" or 2 <= row[5] <= 25
        # the ratio is that of the mean epochs after the first, as the raw epochs say
        steady = {
            m: statistics.mean(e["seconds"] for r in rs for e in r["epochs"][1:])
            for m, rs in runs.items()
        }
        assert abs(rows["rnnsearch-jax"][3] - steady["rnnsearch-jax"] / steady["plain"]) <= 0.0051


class TestCpuLevers:
    def test_cpu_levers_quick(self):
        # one lever beside the default (each is a process that compiles its steps)
        res = _run("cpu_levers.py", "--levers", "pipeline")
        rows = {r[0]: r for r in res["table"]}
        assert list(rows) == ["default", "pipeline"]
        assert all(r[1] > 0 for r in rows.values()) and rows["default"][2] == 1.0
        assert all(len(r) == res["settings"]["epochs"] for r in res["runs"]["pipeline"])
        # the ratio is that of the mean epochs after the first (the table rounds to 0.01)
        steady = {
            lever: statistics.mean(s for run in runs for s in run[1:])
            for lever, runs in res["runs"].items()
        }
        assert abs(rows["pipeline"][2] - steady["pipeline"] / steady["default"]) <= 0.0051
        assert res["produce_epoch_seconds"]["pipeline"] > 0


class TestStartup:
    def test_startup_quick(self):
        res = _run("startup.py")
        rows = {r[0]: r for r in res["table"]}
        assert list(rows) == ["tensorflow-loaded", "jax-only"]
        # the arms differ in what they load, which the child reports itself
        assert rows["tensorflow-loaded"][3] is True and rows["jax-only"][3] is False
        assert all(r["seconds"] > 0 for arm in res["runs"].values() for r in arm)


class TestLstmStep:
    def test_lstm_step_quick(self):
        res = _run("lstm_step.py")
        rows = {r[0]: r for r in res["table"]}
        assert list(rows) == [
            "keras-form",
            "recomputed",
            "recomputed-unrolled",
            "hoisted",
            "custom-backward",
            "recomputed-backward",
        ]
        # the six forms compute the same gradients, or nothing is timed
        assert all(d <= 1e-4 for d in res["gradient_difference"].values())
        assert rows["keras-form"][4] == 1.0
        for form, row in rows.items():
            best = min(res["seconds"][form])
            assert len(res["seconds"][form]) == res["settings"]["repeats"]
            assert abs(row[1] - best * 1e3) <= 0.0051
            assert abs(row[4] - best / min(res["seconds"]["keras-form"])) <= 0.0051


class TestCompileCache:
    def test_compile_cache_quick(self):
        res = _run("compile_cache.py")
        off, on = res["resume"]["off"], res["resume"]["on"]
        for arm in (off, on):
            assert arm["states"] == ["interrupted", "complete"] and arm["compilations"] > 0
        # the process killed with SIGKILL after an epoch compiled every step into the empty
        # cache, and the resumed one loaded them all; without the cache, none, and no folder
        assert off["cached"] == 0 and on["cached"] == on["compilations"]
        assert on["compile_s"] < off["compile_s"]
        assert on["cache_entries"] > 0 and not on["cache_read_errors"]
        assert not off["cache_folder_made"] and off["cache_entries"] == 0
        # the loaded steps compute what compiled ones do: the same curve, epoch for epoch
        assert on["val_accuracy"] and on["val_accuracy"] == pytest.approx(
            off["val_accuracy"], abs=1e-6
        )
        assert list(res["hyperband"]) == ["on"]  # quick: the cache's side only
        hb_on = res["hyperband"]["on"]
        assert hb_on["later_rounds"]["trials"] >= 1
        # a later round trains a round-0 configuration again: its steps come from the cache
        assert hb_on["later_rounds"]["cached"] == hb_on["later_rounds"]["compilations"] > 0
