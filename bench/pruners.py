"""Optuna's pruners compared on the data-fitted default search.

    python bench/pruners.py                          # replay: 30 unpruned trials a task, 5 epochs
    python bench/pruners.py --trials 12 --max-epochs 4 --limit 600      # reduced
    python bench/pruners.py --live --budget 900 --seeds 3              # live searches instead
    python bench/pruners.py --curves bench/results/pruners.json --out pruners-replay  # replay only

Candidates (search.engines.pruners): ``median`` (the old rule: below the median at the same epoch,
judged from epoch 1), ``median-warmup`` (judged from epoch 2, after 5 trials), ``patient`` (the
median rule once a trial has stopped improving for an epoch) and ``halving`` (asynchronous
successive halving from epoch 2).

Replay (default): per task, `rnnsearch run --pruner none` records every trial's whole learning
curve; each pruner is then replayed over the same curves in trial order (an in-memory Optuna study
with that pruner; each epoch reported, the trial stopped where the pruner says). Every pruner sees
the same trials, so the comparison isolates the pruning decision: epochs it spends, whether it
keeps the best trial, how many trials it ends early that would have finished above the median
trial (the slow starters) or in the top quarter, and how many it ends at epoch 1. (In a live search, pruned trials also change what TPE samples next;
``--live`` runs whole searches per pruner at one training-time budget instead, which needs a
budget large enough for dozens of trials.)

Tasks (bench/fit_data.py): Japanese vowels (9 classes, numeric, variable length) and synthetic
control charts (6 classes, numeric, fixed length) by default; any set of fit_data can be named.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's search package

from common import REPO, table, write_result  # noqa: E402
from fit_data import all_sets  # noqa: E402

PRUNERS = ("median", "median-warmup", "patient", "halving")


def rnnsearch(*args: str) -> str:
    cmd = [sys.executable, "-m", "search", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def search(storage: str, study: str, data, pruner: str, seed: int, args, budget: bool) -> None:
    rnnsearch(
        "run", "--study", study, "--data", str(data.path), *data.options,
        "--pruner", pruner, "--trials", str(args.trials if not budget else 1000),
        *(["--time-budget", f"{args.budget}s"] if budget else []),
        "--max-epochs", str(args.max_epochs), "--seed", str(seed),
        *(["--limit", str(args.limit)] if args.limit else []),
        "--storage", storage, "--quiet", "--format", "json",
    )  # fmt: skip


def curves(storage: str, study: str) -> list[list[float]]:
    """Every finished trial's validation accuracy per epoch, in trial order."""
    rows = json.loads(rnnsearch("export", study, "--storage", storage, "--format", "json"))
    out = []
    for row in sorted(rows, key=lambda r: r["trial"]):
        if row["state"] in ("complete", "pruned") and row.get("curve"):
            out.append([float(e["val_accuracy"]) for e in row["curve"]])
    return out


def replay(pruner_name: str, trial_curves: list[list[float]]) -> dict:
    """Each recorded curve reported to a fresh study with that pruner, in trial order."""
    import optuna

    from search.engines.pruners import make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner_name))
    kept, epochs, pruned_at = [], 0, []
    for curve in trial_curves:
        trial = study.ask()
        stopped = None
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            epochs += 1
            if epoch < len(curve) and trial.should_prune():
                stopped = epoch
                break
        if stopped is None:
            study.tell(trial, max(curve))
            kept.append(max(curve))
            pruned_at.append(None)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            pruned_at.append(stopped)
    finals = [max(c) for c in trial_curves]
    top = sorted(finals, reverse=True)[: max(1, len(finals) // 4)]
    threshold = min(top)
    median = statistics.median(finals)
    return {
        "best_kept": max(kept) if kept else None,
        "best_overall": max(finals),
        "epochs": epochs,
        "epochs_unpruned": sum(len(c) for c in trial_curves),
        "pruned": sum(1 for p in pruned_at if p is not None),
        "pruned_at_epoch_1": sum(1 for p in pruned_at if p == 1),
        "top_quarter_pruned": sum(
            1 for p, f in zip(pruned_at, finals, strict=True) if p is not None and f >= threshold
        ),
        # slow starters: ended early, though their whole curve ends above the median trial's
        "above_median_pruned": sum(
            1 for p, f in zip(pruned_at, finals, strict=True) if p is not None and f > median
        ),
    }


def live(args, sets, storage: str) -> dict:
    results: dict[str, dict[str, list[dict]]] = {}
    for seed in range(1, args.seeds + 1):
        for task in args.tasks.split(","):
            for pruner in args.pruners.split(","):
                study = f"{task}-{pruner}-{seed}"
                search(storage, study, sets[task], pruner, seed, args, budget=True)
                values = [max(c) for c in curves(storage, study)]
                res = {"best": max(values) if values else None, "finished": len(values)}
                results.setdefault(task, {}).setdefault(pruner, []).append(res)
                print(f"{task} {pruner} seed {seed}: {json.dumps(res)}", flush=True)
    rows = [
        [task, pruner, statistics.mean(r["best"] for r in runs), sum(r["finished"] for r in runs)]
        for task, by in results.items()
        for pruner, runs in by.items()
    ]
    print(table(["task", "pruner", "best val (mean)", "trials"], rows))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="unpruned trials a task (replay)")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--tasks", default="japanese-vowels,control-charts")
    parser.add_argument("--limit", type=int, default=None, help="a slice of each task's training")
    parser.add_argument("--pruners", default=",".join(PRUNERS))
    parser.add_argument("--live", action="store_true", help="whole searches per pruner instead")
    parser.add_argument("--budget", type=float, default=900.0, help="--live: training seconds")
    parser.add_argument("--out", default="pruners", help="result name in bench/results")
    parser.add_argument(
        "--curves", default=None, help="replay the curves of an earlier result file, record none"
    )
    args = parser.parse_args()
    sets = all_sets()
    with tempfile.TemporaryDirectory(prefix="rnnsearch-pruners-") as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        if args.live:
            results: dict = live(args, sets, storage)
        else:
            results = {}
            rows = []
            for seed in range(1, args.seeds + 1):
                for task in args.tasks.split(","):
                    study = f"{task}-unpruned-{seed}"
                    if args.curves:
                        earlier = json.loads(Path(args.curves).read_text())["results"]
                        recorded = earlier[task][f"curves_seed_{seed}"]
                    else:
                        search(storage, study, sets[task], "none", seed, args, budget=False)
                        recorded = curves(storage, study)
                    results.setdefault(task, {})[f"curves_seed_{seed}"] = recorded
                    for pruner in args.pruners.split(","):
                        res = replay(pruner, recorded)
                        results[task].setdefault(pruner, []).append(res)
                        print(f"{task} {pruner} seed {seed}: {json.dumps(res)}", flush=True)
            for task, by in results.items():
                for pruner in args.pruners.split(","):
                    runs = by[pruner]
                    kept = [r["best_kept"] for r in runs if r["best_kept"] is not None]
                    rows.append(
                        [
                            task,
                            pruner,
                            statistics.mean(kept) if kept else "-",
                            statistics.mean(r["best_overall"] for r in runs),
                            f"{sum(r['epochs'] for r in runs)}/"
                            f"{sum(r['epochs_unpruned'] for r in runs)}",
                            sum(r["pruned"] for r in runs),
                            sum(r["pruned_at_epoch_1"] for r in runs),
                            sum(r["top_quarter_pruned"] for r in runs),
                            sum(r["above_median_pruned"] for r in runs),
                        ]
                    )
            print(
                table(
                    [
                        "task",
                        "pruner",
                        "best kept",
                        "best of all",
                        "epochs spent/all",
                        "pruned",
                        "at epoch 1",
                        "top quarter pruned",
                        "above median pruned",
                    ],
                    rows,
                )
            )
    path = write_result(
        args.out,
        {"mode": "live" if args.live else "replay", "trials": args.trials,
         "max_epochs": args.max_epochs, "seeds": args.seeds, "limit": args.limit,
         "budget_s": args.budget if args.live else None, "results": results},
    )  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
