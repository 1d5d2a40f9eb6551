"""Per-epoch time and validation accuracy on IMDB: fixed-length padding vs bucketing by length.

    python bench/bucketing.py           # 10,000-review slice, 3 epochs, maxlen 200 and 500
    python bench/bucketing.py --quick   # 600 reviews, 1 epoch, maxlen 200

"fixed": every batch padded (pre) to maxlen, `model.fit` on arrays, as rnnsearch did before.
"bucketing": rows grouped by length, each batch cut to its longest row (search.datasets.batching),
the model takes any length. Both run rnnsearch's own data preparation, model builder and training
loop (GRU-32, Embedding 32, vocabulary 10,000, Adam 1e-3, batch 64, seed 0) on the same
training and validation reviews, each mode in its own process, one after the other.
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
import json, os, sys, tempfile, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RNNSEARCH_CACHE", tempfile.mkdtemp())
mode, cfg, npz, limit = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
from search import tfenv
tfenv.quiet_import()
import keras, numpy as np
from search.data import load_source
from search.datasets.batching import length_batches
from search.model import build_model
from search.train import fit
src = load_source(npz, limit=limit, options={"bucketing": mode == "bucketing"})
data = src.prepare(cfg)
keras.utils.set_random_seed(0)
model = build_model(cfg, data.spec)
rows = []
class Reporter:
    def epoch_done(self, model, epoch, metrics, seconds):
        rows.append({"seconds": seconds, **metrics})
        return False
fit(model, data, cfg, Reporter())
if mode == "bucketing":
    widths = [int(data.len_train[b].max()) * len(b)
              for b in length_batches(data.len_train, cfg["batch_size"], np.random.default_rng(0))]
    steps = sum(widths) / len(data.len_train)
else:
    steps = float(cfg["maxlen"])
print(json.dumps({"epochs": rows, "steps_per_review": steps,
                  "mean_length": float(data.len_train.mean()),
                  "train": len(data.y_train), "val": len(data.y_val)}))
"""


def measure(mode: str, cfg: dict, limit: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, json.dumps(cfg), str(IMDB_NPZ), str(limit)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} {cfg} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--limit", type=int, help="training reviews (default 10000; quick 600)")
    parser.add_argument("--epochs", type=int, help="epochs (default 3; quick 1)")
    args = parser.parse_args()
    limit, epochs, maxlens = (600, 1, [200]) if args.quick else (10000, 3, [200, 500])
    limit = args.limit or limit
    epochs = args.epochs or epochs
    results, rows = {}, []
    for maxlen in maxlens:
        cfg = {**CONFIG, "maxlen": maxlen, "epochs": epochs}
        per = {mode: measure(mode, cfg, limit) for mode in ("fixed", "bucketing")}
        results[str(maxlen)] = per
        seconds = {}
        for mode, res in per.items():
            eps = res["epochs"]
            # the first epoch holds graph tracing; later epochs show the steady state
            steady = [e["seconds"] for e in eps[1:]] or [eps[0]["seconds"]]
            seconds[mode] = statistics.mean(steady)
            rows.append(
                [
                    maxlen,
                    mode,
                    round(seconds[mode], 2),
                    round(eps[0]["seconds"], 2),
                    round(eps[-1]["val_accuracy"], 4),
                    round(max(e["val_accuracy"] for e in eps), 4),
                    round(res["steps_per_review"], 1),
                ]
            )
        rows[-1].append(round(seconds["fixed"] / seconds["bucketing"], 2))
        rows[-2].append(1.0)
    headers = [
        "maxlen",
        "mode",
        "s/epoch",
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
            "settings": {"limit": limit, "epochs": epochs, "maxlens": maxlens, "config": CONFIG},
            "results": results,
            "headers": headers,
            "table": rows,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
