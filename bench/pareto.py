"""Accuracy against latency: which Optuna sampler reaches the better Pareto front on IMDB.

    python bench/pareto.py                   # 20 minutes of training per sampler (--budget 1200)
    python bench/pareto.py --budget 600 --limit 2000 --max-epochs 2 --trials 24
                                             # what was run on the shared 2-core machine
    python bench/pareto.py --quick           # 60 s each on a 1,000-review slice (a smoke test)
    python bench/pareto.py --parallel        # both arms at once, each with half the machine

Each sampler (TPE, the default, and NSGA-II) runs its own `rnnsearch run --objectives
val_accuracy,latency_ms` study of the default space on the same data, with the same seed and the
same `--time-budget` (training time of the study's trials), one after the other on this
machine. Reported per sampler: its front (trials no other trial beats in both accuracy and
latency), the front's hypervolume (the area it dominates up to a reference point shared by both:
val_accuracy 0.5, the slowest latency either search measured; bigger is better), the most
accurate trial, and the smallest model (fewest parameters) within one point of validation
accuracy of it with its latency relative to it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import IMDB_NPZ, RNNSEARCH, table, write_result  # noqa: E402

from search.objectives import hypervolume_2d, pareto_front  # noqa: E402

OBJECTIVES = ("val_accuracy", "latency_ms")


def run_arm(
    sampler: str,
    storage: str,
    *,
    budget: float,
    limit: int,
    max_epochs: int,
    seed: int,
    trials: int,
) -> Arm:
    cmd = [
        RNNSEARCH,
        "run",
        "--study",
        f"pareto-{sampler}",
        "--objectives",
        ",".join(OBJECTIVES),
        "--sampler",
        sampler,
        "--data",
        str(IMDB_NPZ),
        *(["--limit", str(limit)] if limit else []),
        "--max-epochs",
        str(max_epochs),
        "--patience",
        "1",
        # The target sets TPE's random start-up trials (a quarter of it, 3 to 10): a realistic
        # target, not an unreachable one; the time budget ends the search first.
        "--trials",
        str(trials),
        "--time-budget",
        f"{budget}s",
        "--seed",
        str(seed),
        "--storage",
        storage,
        "--quiet",
        "--format",
        "json",
    ]
    return Arm(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True), budget)


class Arm:
    """One sampler's search in flight."""

    def __init__(self, proc: subprocess.Popen[str], budget: float) -> None:
        self.proc, self.budget, self.started = proc, budget, time.perf_counter()

    def wait(self) -> dict[str, Any]:
        try:
            # The budget counts training time; a trial in flight when it runs out ends after its
            # epoch.
            out, _ = self.proc.communicate(timeout=self.budget * 1.5 + 120)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            out, _ = self.proc.communicate()
        wall = round(time.perf_counter() - self.started, 1)
        return {"wall_s": wall, "rc": self.proc.returncode, "out": out}


def summarise(storage: str, study: str) -> dict[str, Any]:
    from storage import StudyDatabase

    db = StudyDatabase(storage, create=False)
    try:
        trials = [t for t in db.trials(study) if t.state == "complete"]
    finally:
        db.dispose()
    rows = {
        t.number: {
            "trial": t.number,
            "val_accuracy": t.val_accuracy,
            "latency_ms": t.latency_ms,
            "latency_single_ms": t.latency_single_ms,
            "params": t.param_count,
            "model_mb": t.model_mb,
            "cell": t.config.get("cell"),
            "units": t.config.get("units"),
            "bidirectional": t.config.get("bidirectional"),
            "maxlen": t.config.get("maxlen"),
            "duration_s": round(t.duration_s or 0.0, 1),
        }
        for t in trials
        if t.val_accuracy is not None and t.latency_ms is not None
    }
    points = {n: [r["val_accuracy"], r["latency_ms"]] for n, r in rows.items()}
    front = [rows[n] for n in pareto_front(points, OBJECTIVES)]
    front.sort(key=lambda r: r["latency_ms"])
    most = max(rows.values(), key=lambda r: (r["val_accuracy"], -r["params"]), default=None)
    smallest = None
    if most is not None:
        near = [r for r in rows.values() if r["val_accuracy"] >= most["val_accuracy"] - 0.01]
        smallest = min(near, key=lambda r: (r["params"], r["latency_ms"]))
    return {
        "complete": len(rows),
        "trials": sorted(rows.values(), key=lambda r: r["trial"]),
        "front": front,
        "most_accurate": most,
        "smallest_within_1_point": smallest,
        "smallest_latency_relative": (
            round(smallest["latency_ms"] / most["latency_ms"], 3) if most and smallest else None
        ),
        "smallest_params_relative": (
            round(smallest["params"] / most["params"], 3) if most and smallest else None
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds of training per arm")
    ap.add_argument("--limit", type=int, default=5000, help="training reviews (0: all)")
    ap.add_argument("--max-epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=30, help="target trials (the budget ends first)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samplers", default="tpe,nsga2")
    ap.add_argument("--quick", action="store_true", help="60 s per arm, 1,000 reviews")
    ap.add_argument(
        "--parallel", action="store_true", help="run the arms at once, each on its own database"
    )
    ap.add_argument("--dir", default=None, help="folder for the study database (default: temp)")
    ap.add_argument(
        "--analyse-only", action="store_true", help="summarise the studies already in --dir"
    )
    args = ap.parse_args()
    if args.quick:
        args.budget, args.limit, args.max_epochs = 60.0, 1000, 1
    folder = Path(args.dir or tempfile.mkdtemp(prefix="rnnsearch-pareto-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    samplers = args.samplers.split(",")
    # In parallel each arm has its own database file (two SQLite writers would wait on each
    # other's locks) and about 1/len(samplers) of the machine: the same share for every arm.
    storages = {
        s: f"sqlite:///{folder / (f'pareto-{s}.db' if args.parallel else 'pareto.db')}"
        for s in samplers
    }
    walls: dict[str, float | None] = dict.fromkeys(samplers)
    if not args.analyse_only:
        running: dict[str, Arm] = {}
        for sampler in samplers:
            print(f"== {sampler}: {args.budget:.0f} s of training", file=sys.stderr, flush=True)
            running[sampler] = run_arm(
                sampler,
                storages[sampler],
                budget=args.budget,
                limit=args.limit or 0,
                max_epochs=args.max_epochs,
                seed=args.seed,
                trials=args.trials,
            )
            if not args.parallel:
                walls[sampler] = running.pop(sampler).wait()["wall_s"]
        for sampler, arm in running.items():
            walls[sampler] = arm.wait()["wall_s"]
    arms: dict[str, Any] = {
        s: {**summarise(storages[s], f"pareto-{s}"), "wall_s": walls[s]} for s in samplers
    }
    slowest = max((r["latency_ms"] for a in arms.values() for r in a["front"]), default=1.0)
    reference = [0.5, slowest * 1.05]
    for arm in arms.values():
        arm["hypervolume"] = round(
            hypervolume_2d(
                [[r["val_accuracy"], r["latency_ms"]] for r in arm["front"]], OBJECTIVES, reference
            ),
            4,
        )
    # Parameter counts do not depend on the machine's load (latency does, by a factor of up to
    # 3 between runs of one configuration on a shared machine): the same comparison in
    # (val_accuracy, params), over every complete trial, is the load-free check.
    biggest = max((r["params"] for a in arms.values() for r in a["trials"]), default=1)
    for arm in arms.values():
        by_params = {r["trial"]: [r["val_accuracy"], r["params"]] for r in arm["trials"]}
        names = ("val_accuracy", "params")
        front = pareto_front(by_params, names)
        arm["front_by_params"] = front
        arm["hypervolume_by_params"] = round(
            hypervolume_2d([by_params[n] for n in front], names, [0.5, biggest * 1.05]) / 1e6, 4
        )
    winner = max(arms, key=lambda a: arms[a]["hypervolume"])
    for name, arm in arms.items():
        print(
            f"\n{name}: {arm['complete']} complete trials, hypervolume {arm['hypervolume']} "
            f"(accuracy x ms); in (val_accuracy, params): front {arm['front_by_params']}, "
            f"hypervolume {arm['hypervolume_by_params']} (accuracy x M params)"
        )
        print(
            table(
                ["trial", "val_acc", "latency_ms", "single_ms", "params", "cell", "units", "bi"],
                [
                    [
                        r["trial"],
                        r["val_accuracy"],
                        r["latency_ms"],
                        r["latency_single_ms"],
                        r["params"],
                        r["cell"],
                        r["units"],
                        r["bidirectional"],
                    ]
                    for r in arm["front"]
                ],
            )
        )
        most, small = arm["most_accurate"], arm["smallest_within_1_point"]
        if most and small:
            print(
                f"most accurate: trial {most['trial']} ({most['val_accuracy']:.4f}, "
                f"{most['params']} params, {most['latency_ms']:.1f} ms); smallest within 1 point: "
                f"trial {small['trial']} ({small['val_accuracy']:.4f}, {small['params']} params, "
                f"{small['latency_ms']:.1f} ms = {arm['smallest_latency_relative']}x its latency)"
            )
    print(f"\nbetter front: {winner} (reference point {reference})")
    path = write_result(
        "pareto",
        {
            "budget_s": args.budget,
            "limit": args.limit,
            "max_epochs": args.max_epochs,
            "trials": args.trials,
            "seed": args.seed,
            "parallel": args.parallel,
            "storage": storages,
            "reference": reference,
            "winner": winner,
            "arms": arms,
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
