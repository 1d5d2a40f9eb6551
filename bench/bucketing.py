"""Per-epoch time and validation accuracy on IMDB: fixed-length padding vs bucketing by length.

    python bench/bucketing.py           # 10,000-review slice, 3 epochs, 2 seeds, maxlen 200, 500
    python bench/bucketing.py --quick   # 600 reviews, 1 epoch, 1 seed, maxlen 200

"fixed": every batch padded (pre) to maxlen, `model.fit` on arrays, as rnnsearch did before.
"bucketing": rows grouped by length, each batch cut to its longest row (search.datasets.batching),
the model takes any length. Both run rnnsearch's own data preparation, model builder and training
loop (GRU-32, Embedding 32, vocabulary 10,000, Adam 1e-3, batch 64, seeds 0, 1, ...) on the same
training and validation reviews, each run in its own process, the modes alternating.

Figures are means over the seeds: wall seconds per epoch (epochs 2+, without graph tracing),
CPU seconds per epoch (this process only: less sensitive to other load on the machine),
validation accuracy of the last and of the best epoch, and time steps computed per review.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, table, write_result  # noqa: E402

CONFIG = {
    "cell": "gru",
    "units": 32,
    "bidirectional": False,
    "layers": 1,
    "head": "last",
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "embedding_dim": 32,
    "vocab_size": 10000,
    "padding": "pre",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 64,
}

CHILD = r"""
import atexit, json, os, shutil, sys, tempfile, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "RNNSEARCH_CACHE" not in os.environ:
    os.environ["RNNSEARCH_CACHE"] = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, os.environ["RNNSEARCH_CACHE"], True)
mode, cfg, npz = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
limit, seed = int(sys.argv[4]), int(sys.argv[5])
from search import tfenv
tfenv.quiet_import()
import keras, numpy as np
from search.data import load_source
from search.datasets.batching import length_batches, study_widths, width_for
from search.model import build_model
from search.train import fit
src = load_source(npz, limit=limit, options={"bucketing": mode == "bucketing"})
data = src.prepare(cfg)
keras.utils.set_random_seed(seed)
model = build_model(cfg, data.spec)
rows = []
class Reporter:
    cpu = time.process_time()
    def epoch_done(self, model, epoch, metrics, seconds):
        now = time.process_time()
        rows.append({"seconds": seconds, "cpu_seconds": now - self.cpu, **metrics})
        self.cpu = now
        return False
fit(model, data, cfg, Reporter())
if mode == "bucketing":
    widths = study_widths(data)
    batches = length_batches(data.len_train, cfg["batch_size"], np.random.default_rng(0),
                             widths=widths, fill_last=True)
    steps = sum(width_for(int(data.len_train[b].max()), widths) * len(b)
                for b in batches) / sum(len(b) for b in batches)
else:
    steps = float(cfg["maxlen"])
print(json.dumps({"epochs": rows, "steps_per_review": steps,
                  "mean_length": float(data.len_train.mean()),
                  "train": len(data.y_train), "val": len(data.y_val)}))
"""


def measure(mode: str, cfg: dict, limit: int, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, json.dumps(cfg), str(IMDB_NPZ), str(limit), str(seed)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} {cfg} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(maxlen: int, mode: str, runs: list[dict]) -> list:
    def steady(key: str) -> float:
        # the first epoch holds graph tracing; later epochs show the steady state
        return statistics.mean(e[key] for r in runs for e in (r["epochs"][1:] or r["epochs"]))

    return [
        maxlen,
        mode,
        round(steady("seconds"), 2),
        round(steady("cpu_seconds"), 2),
        round(statistics.mean(r["epochs"][0]["seconds"] for r in runs), 2),
        round(statistics.mean(r["epochs"][-1]["val_accuracy"] for r in runs), 4),
        round(statistics.mean(max(e["val_accuracy"] for e in r["epochs"]) for r in runs), 4),
        round(runs[0]["steps_per_review"], 1),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--limit", type=int, help="training reviews (default 10000; quick 600)")
    parser.add_argument("--epochs", type=int, help="epochs (default 3; quick 1)")
    parser.add_argument("--seeds", type=int, help="weight seeds per mode (default 2; quick 1)")
    parser.add_argument("--maxlen", type=int, action="append", help="maxlen (repeatable)")
    args = parser.parse_args()
    limit, epochs, seeds, maxlens = (600, 1, 1, [200]) if args.quick else (10000, 3, 2, [200, 500])
    limit, epochs, seeds = args.limit or limit, args.epochs or epochs, args.seeds or seeds
    maxlens = args.maxlen or maxlens
    results: dict[str, dict[str, list[dict]]] = {}
    rows: list[list] = []
    for maxlen in maxlens:
        cfg = {**CONFIG, "maxlen": maxlen, "epochs": epochs}
        per: dict[str, list[dict]] = {"fixed": [], "bucketing": []}
        for seed in range(seeds):
            for mode, runs in per.items():  # alternating: load changes hit both modes alike
                runs.append(measure(mode, cfg, limit, seed))
        results[str(maxlen)] = per
        fixed = summarise(maxlen, "fixed", per["fixed"])
        bucketed = summarise(maxlen, "bucketing", per["bucketing"])
        rows += [[*fixed, 1.0], [*bucketed, round(fixed[2] / bucketed[2], 2)]]
    headers = [
        "maxlen",
        "mode",
        "s/epoch",
        "cpu_s/epoch",
        "first_epoch_s",
        "val_acc_last",
        "val_acc_best",
        "steps/review",
        "speedup",
    ]
    print(table(headers, rows))
    path = write_result(
        "bucketing-quick" if args.quick else "bucketing",
        {
            "settings": {
                "limit": limit,
                "epochs": epochs,
                "seeds": seeds,
                "maxlens": maxlens,
                "config": CONFIG,
            },
            "results": results,
            "headers": headers,
            "table": rows,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
