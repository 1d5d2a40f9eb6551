"""Per-epoch time and accuracy of three reference configurations: rnnsearch vs plain fit.

    python bench/per_epoch.py                 # 5,000-review slice, 3 epochs, seeds 0-2
    python bench/per_epoch.py --seeds 1       # one seed (a third of the time)
    python bench/per_epoch.py --configs simple32-len100   # some configurations only
    python bench/per_epoch.py --quick         # 600 reviews, 1 epoch, maxlen capped at 100

Configurations (issue 9, item 2): SimpleRNN-32 at maxlen 100; LSTM-64 at maxlen 500;
bidirectional GRU-64 at maxlen 500 (Embedding 32, vocabulary 10,000, Adam 1e-3, batch 64).
"rnnsearch" runs each as a one-trial study through the service (its data preparation, model
builder and training loop, batches by length); "rnnsearch-fixed" the same with --no-bucketing
(every batch padded to maxlen, as before bucketing); "plain" is `model.fit` on arrays padded by keras.utils.pad_sequences,
as people write it. Both see the same training and validation reviews. Each runs in its own
process, one after the other. Accuracy after 3 epochs on 4,000 reviews depends much on the
seed (SimpleRNN-32 at maxlen 100: 0.54 to 0.80 validation accuracy for plain fit over seeds 1-3),
so every mode runs with the same seeds and the table gives the mean; the JSON has each seed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, REPO, table, write_result  # noqa: E402

#: where the child processes find rnnsearch and bench/reference.py
PATHS = [str(REPO), str(Path(__file__).resolve().parent)]

CONFIGS = {
    "simple32-len100": {"cell": "simple", "units": 32, "bidirectional": False, "maxlen": 100},
    "lstm64-len500": {"cell": "lstm", "units": 64, "bidirectional": False, "maxlen": 500},
    "bigru64-len500": {"cell": "gru", "units": 64, "bidirectional": True, "maxlen": 500},
}

#: "rnnsearch-fixed": rnnsearch before bucketing (every batch padded to maxlen), for before/after.
MODES = ("plain", "rnnsearch-fixed", "rnnsearch")

CHILD = r"""
import json, sys
mode, cfg, npz, limit, epochs, seed = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
from reference import one_trial_study, plain_fit
if mode == "plain":
    result = plain_fit(cfg, npz, limit, epochs, seed)
else:
    # this benchmark's study fixes only these; the rest keep the space's defaults
    fixed = {"embedding_dim": 32, "vocab_size": 10000, "learning_rate": 0.001, "batch_size": 64}
    result = one_trial_study(cfg, npz, limit, epochs, seed, fixed=fixed,
                             bucketing=mode == "rnnsearch")
print(json.dumps(result["epochs"]))
"""


def measure(mode: str, cfg: dict, limit: int, epochs: int, seed: int) -> list[dict]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            mode,
            json.dumps(cfg),
            str(IMDB_NPZ),
            str(limit),
            str(epochs),
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(PATHS)},
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} {cfg} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per mode (default 3)")
    parser.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), metavar="CONFIG"
    )
    args = parser.parse_args()
    limit, epochs = (600, 1) if args.quick else (5000, 3)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    results, rows = {}, []
    for name in args.configs:
        cfg = CONFIGS[name]
        if args.quick:
            cfg = {**cfg, "maxlen": min(cfg["maxlen"], 100)}
        per = {mode: [measure(mode, cfg, limit, epochs, s) for s in seeds] for mode in MODES}
        results[name] = per
        # the first epoch holds graph tracing; later epochs show the steady state
        steady = {
            m: [r["seconds"] for run in runs for r in (run[1:] or run[:1])]
            for m, runs in per.items()
        }
        final = {
            m: statistics.mean(run[-1]["val_accuracy"] for run in runs) for m, runs in per.items()
        }
        plain_s, ours_s = statistics.mean(steady["plain"]), statistics.mean(steady["rnnsearch"])
        fixed_s = statistics.mean(steady["rnnsearch-fixed"])
        rows.append(
            [
                name,
                round(plain_s, 2),
                round(fixed_s, 2),
                round(ours_s, 2),
                round(fixed_s / plain_s, 2),
                round(ours_s / plain_s, 2),
                round(final["plain"], 4),
                round(final["rnnsearch-fixed"], 4),
                round(final["rnnsearch"], 4),
            ]
        )
    print(
        table(
            [
                "config",
                "plain_s/epoch",
                "before_s/epoch",
                "rnnsearch_s/epoch",
                "ratio_before",
                "ratio",
                "plain_val_acc_mean",
                "before_val_acc_mean",
                "rnnsearch_val_acc_mean",
            ],
            rows,
        )
    )
    path = write_result(
        "per_epoch-quick" if args.quick else "per_epoch",
        {
            "settings": {"limit": limit, "epochs": epochs, "seeds": seeds},
            "epochs": results,
            "table": rows,
            "target_ratio": 0.6,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
