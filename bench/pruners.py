"""Optuna's pruners compared on the data-fitted default search, at one training-time budget.

    python bench/pruners.py                                   # full size: 15 min a search, 3 seeds
    python bench/pruners.py --budget 120 --seeds 1 --tasks japanese-vowels,control-charts \
        --limit 600                                           # reduced

For each task (default: Rotten Tomatoes snippets, 3 classes, and Japanese vowels, 9 classes; see
bench/fit_data.py) and each pruner of search.engines.pruners (median: the old rule, judged from
epoch 1; median-warmup; patient; halving), `rnnsearch run` searches the default space fitted to
the data with ``--pruner NAME --time-budget B --max-epochs E --seed S``. Reported per pruner: the
best validation accuracy reached within the budget (mean over seeds), trials finished, trials
pruned, and trials pruned at epoch 1 (the slow starters the old rule ended wholesale).
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

from common import REPO, table, write_result  # noqa: E402
from fit_data import all_sets  # noqa: E402

PRUNERS = ("median", "median-warmup", "patient", "halving")


def rnnsearch(*args: str) -> str:
    cmd = [sys.executable, "-m", "search", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def one_search(storage: str, study: str, data, pruner: str, seed: int, args) -> dict:
    rnnsearch(
        "run", "--study", study, "--data", str(data.path), *data.options,
        "--pruner", pruner, "--trials", "1000", "--time-budget", f"{args.budget}s",
        "--max-epochs", str(args.max_epochs), "--seed", str(seed),
        *(["--limit", str(args.limit)] if args.limit else []),
        "--storage", storage, "--quiet", "--format", "json",
    )  # fmt: skip
    trials = json.loads(rnnsearch("trials", study, "--storage", storage, "--format", "json"))
    finished = [t for t in trials if t["state"] in ("complete", "pruned")]
    values = [t["value"] for t in finished if t["value"] is not None]
    pruned = [t for t in finished if t["state"] == "pruned"]
    return {
        "best": max(values) if values else None,
        "finished": len(finished),
        "pruned": len(pruned),
        "pruned_at_epoch_1": sum(1 for t in pruned if t.get("epochs") == 1),
        "epochs_trained": sum(t.get("epochs") or 0 for t in finished),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds a search")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default="rt-snippets,japanese-vowels")
    parser.add_argument("--limit", type=int, default=None, help="a slice of each task's training")
    parser.add_argument("--pruners", default=",".join(PRUNERS))
    parser.add_argument("--out", default="pruners", help="result name in bench/results")
    args = parser.parse_args()
    sets = all_sets()
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="rnnsearch-pruners-") as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        for seed in range(1, args.seeds + 1):
            for task in args.tasks.split(","):
                for pruner in args.pruners.split(","):
                    res = one_search(
                        storage, f"{task}-{pruner}-{seed}", sets[task], pruner, seed, args
                    )
                    results.setdefault(task, {}).setdefault(pruner, []).append(res)
                    print(f"{task} {pruner} seed {seed}: {json.dumps(res)}", flush=True)
    rows = []
    for task, by_pruner in results.items():
        for pruner, runs in by_pruner.items():
            bests = [r["best"] for r in runs if r["best"] is not None]
            rows.append(
                [
                    task,
                    pruner,
                    statistics.mean(bests) if bests else "-",
                    sum(r["finished"] for r in runs),
                    sum(r["pruned"] for r in runs),
                    sum(r["pruned_at_epoch_1"] for r in runs),
                    sum(r["epochs_trained"] for r in runs),
                ]
            )
    print(
        table(
            ["task", "pruner", "best val (mean)", "trials", "pruned", "pruned at 1", "epochs"],
            rows,
        )
    )
    path = write_result(
        args.out,
        {"budget_s": args.budget, "max_epochs": args.max_epochs, "seeds": args.seeds,
         "limit": args.limit, "results": results},
    )  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
