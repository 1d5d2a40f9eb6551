"""The data-fitted default search against one fixed baseline configuration, on four data sets.

    python bench/fit_datasets.py                       # full size: 20 min of training per search
    python bench/fit_datasets.py --budget 120 --imdb-limit 4000 --max-epochs 4   # reduced
    python bench/fit_datasets.py --sets rt-snippets,japanese-vowels --imdb-default
    python bench/fit_datasets.py --budget 240 --imdb-limit 5000 --max-epochs 4 \
        --imdb-default-sets imdb-rating                   # what was run in the third session

For each data set of bench/fit_data.py (IMDB ratings as 8 classes, Rotten Tomatoes snippets,
synthetic control charts, Japanese vowels):

- ``fitted``: `rnnsearch run` with the default space (fitted to the data) and the default pruner,
  ``--time-budget`` seconds of training, at most ``--max-epochs`` epochs a trial, seed 1;
- ``baseline``: one fixed, reasonable configuration (BASELINE: a GRU-64 with a 64-wide embedding
  of 20,000 words at maxlen 200, dropout 0.2, Adam 1e-3, batches of 64), trained for
  ``--max-epochs`` epochs as a one-trial study;
- ``imdb-default`` (with --imdb-default): the default space as it was before it was fitted (its
  IMDB values), same budget.

Each study's best trial is then retrained by `rnnsearch retrain` (on the search's training data:
the slice when ``--imdb-limit`` cuts IMDB) and tested on the set's test split. Reported: best
validation accuracy, retrained test accuracy, trials (complete/pruned) and seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, table, write_result  # noqa: E402
from fit_data import all_sets  # noqa: E402

BASELINE = {
    "cell": "gru",
    "units": 64,
    "layers": 1,
    "bidirectional": False,
    "head": "last",
    "dropout": 0.2,
    "learning_rate": 0.001,
    "optimizer": "adam",
    "vocab_size": 20000,
    "maxlen": 200,
    "embedding_dim": 64,
    "batch_size": 64,
}


def rnnsearch(*args: str) -> dict:
    cmd = [sys.executable, "-m", "search", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexit {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def space_files(folder: Path) -> dict[str, Path]:
    """The baseline's one-point space and the pre-fit default (its IMDB values)."""
    baseline = folder / "baseline.toml"
    lines = ['name = "baseline"', 'description = "one fixed configuration"', "", "[dimensions]"]
    for key, value in BASELINE.items():
        text = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        lines.append(f"{key} = {text}")
    baseline.write_text("\n".join(lines) + "\n")
    default = (REPO / "spaces" / "builtin" / "default.toml").read_text()
    unfitted = folder / "imdb-default.toml"
    unfitted.write_text(
        default.replace('fit = "data"\n', "").replace('name = "default"', 'name = "imdb-default"')
    )
    return {"baseline": baseline, "imdb-default": unfitted}


def one_study(
    storage: str, study: str, data, space: str | None, trials: int, args: argparse.Namespace
) -> dict:
    run_args = ["run", "--study", study, "--data", str(data.path), *data.options]
    if data.name == "imdb-rating" and args.imdb_limit:
        run_args += ["--limit", str(args.imdb_limit)]
    if space is not None:
        run_args += ["--space", space]
    run_args += ["--trials", str(trials), "--max-epochs", str(args.max_epochs), "--seed", "1"]
    if trials > 1:
        run_args += ["--time-budget", f"{args.budget}s"]
    started = time.perf_counter()
    summary = rnnsearch(*run_args, "--storage", storage, "--quiet", "--format", "json")
    search_s = time.perf_counter() - started
    retrain_args = ["retrain", study, "--storage", storage, "--format", "json"]
    if data.name == "imdb-rating" and args.imdb_limit:
        retrain_args += ["--limit", str(args.imdb_limit)]
    retrained = rnnsearch(*retrain_args)
    best = summary["best"] or {}
    return {
        "best_val_accuracy": best.get("value"),
        "best_params": best.get("params"),
        "test_accuracy": retrained.get("test_accuracy"),
        "trials": summary["counts"],
        "search_wall_s": round(search_s, 1),
        "retrain_s": retrained.get("seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1200.0, help="training seconds a search")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--imdb-limit", type=int, default=None, help="slice of IMDB ratings")
    parser.add_argument("--sets", default="imdb-rating,rt-snippets,control-charts,japanese-vowels")
    parser.add_argument("--imdb-default", action="store_true", help="also the unfitted default")
    parser.add_argument(
        "--imdb-default-sets",
        default=None,
        help="the unfitted default on these sets only (comma-separated; implies --imdb-default)",
    )
    parser.add_argument("--out", default="fit_datasets", help="result name in bench/results")
    args = parser.parse_args()
    sets = all_sets()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rnnsearch-fit-") as tmp:
        folder = Path(tmp)
        spaces = space_files(folder)
        storage = f"sqlite:///{folder / 'bench.db'}"
        for name in args.sets.split(","):
            data = sets[name]
            runs = {"fitted": (None, 1000), "baseline": (str(spaces["baseline"]), 1)}
            only = args.imdb_default_sets.split(",") if args.imdb_default_sets else None
            if (args.imdb_default and only is None) or (only is not None and name in only):
                runs["imdb-default"] = (str(spaces["imdb-default"]), 1000)
            for label, (space, trials) in runs.items():
                res = one_study(storage, f"{name}-{label}", data, space, trials, args)
                results.setdefault(name, {"kind": data.kind})[label] = res
                print(f"{name} {label}: {json.dumps(res)}", flush=True)
    rows = []
    for name, res in results.items():
        for label in ("fitted", "baseline", "imdb-default"):
            if label in res:
                r = res[label]
                counts = r["trials"]
                rows.append(
                    [
                        name,
                        label,
                        r["best_val_accuracy"],
                        r["test_accuracy"],
                        f"{counts.get('complete', 0)}/{counts.get('pruned', 0)}",
                        r["search_wall_s"],
                    ]
                )
    print(table(["data", "search", "best val", "test", "complete/pruned", "wall s"], rows))
    path = write_result(
        args.out,
        {
            "budget_s": args.budget,
            "max_epochs": args.max_epochs,
            "imdb_limit": args.imdb_limit,
            "baseline": BASELINE,
            "results": results,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
