"""Per-example training time of three reference RNNs: rnnsearch's compiled steps vs plain fit.

    python bench/compiled_steps.py                       # 5,000 reviews, 3 epochs, seeds 0-2
    python bench/compiled_steps.py --seeds 1             # one seed
    python bench/compiled_steps.py --configs gru32-len200 --modes plain rnnsearch-xla
    python bench/compiled_steps.py --quick               # 600 reviews, 2 epochs, maxlen <= 100

Configurations (issue 17): GRU-32 at maxlen 200; LSTM-64 at maxlen 500; bidirectional GRU-64
with max pooling over time at maxlen 400 (Embedding 32, vocabulary 10,000, Adam 1e-3, batch 64).
``--configs bigru64max-len930``: the last at the fitted default space's longest maxlen on IMDB.
``bigru146max-len180``, ``bigru105last-len470``: the two widest models the default search drew on
full IMDB (where TensorFlow's graphs beat JAX at the shorter length).

Modes, each in its own process, one after the other, same seeds, same reviews:
- ``plain``: ``model.fit`` on arrays padded to maxlen by keras.utils.pad_sequences, Keras'
  defaults (TensorFlow, no XLA on a CPU): the baseline.
- ``rnnsearch-graph``: a one-trial study through rnnsearch (its data preparation, model builder,
  batches by length padded to at most 8 widths), TensorFlow without XLA (``--no-jit``).
- ``rnnsearch-xla``: the same with ``--jit`` (XLA under TensorFlow).
- ``rnnsearch-jax``: the same with ``--backend jax`` (every step compiled by jax.jit), each
  recurrent step recomputed in the backward pass (rnnsearch's default under JAX on a CPU).
- ``rnnsearch-jax-stored``: the same with every step's activations stored for the backward
  pass, as Keras does (``RNNSEARCH_RECOMPUTE_STEPS=0``): before the recomputation.
- ``rnnsearch-jax-quantile``: ``rnnsearch-jax`` with the bucketing before the widths padded
  least (quantile widths, batches cut from length-sorted pools; ``bench/quantile_buckets.py``).

Reported per mode: milliseconds per training example over epochs 2 and later (the steady state;
the first epoch holds the compilations), the ratio to plain, the first epoch's excess over the
steady epochs (what compiling cost), rnnsearch's own count of compilations and (JAX) their
seconds, and the final validation accuracy (mean over seeds; the JSON has every seed).
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

BENCH = Path(__file__).resolve().parent

CONFIGS = {
    "gru32-len200": {
        "cell": "gru",
        "units": 32,
        "bidirectional": False,
        "maxlen": 200,
        "head": "last",
    },
    "lstm64-len500": {
        "cell": "lstm",
        "units": 64,
        "bidirectional": False,
        "maxlen": 500,
        "head": "last",
    },
    "bigru64max-len400": {
        "cell": "gru",
        "units": 64,
        "bidirectional": True,
        "maxlen": 400,
        "head": "max",
    },
    # the fitted default space's longest maxlen on IMDB (not one of issue 17's three)
    "bigru64max-len930": {
        "cell": "gru",
        "units": 64,
        "bidirectional": True,
        "maxlen": 930,
        "head": "max",
    },
    # two wide models the default search drew on full IMDB (time-to-accuracy run, seed 0)
    "bigru146max-len180": {
        "cell": "gru",
        "units": 146,
        "bidirectional": True,
        "maxlen": 180,
        "head": "max",
    },
    "bigru105last-len470": {
        "cell": "gru",
        "units": 105,
        "bidirectional": True,
        "maxlen": 470,
        "head": "last",
    },
}
#: What a run without --configs measures: issue 17's three reference configurations.
ISSUE_CONFIGS = ("gru32-len200", "lstm64-len500", "bigru64max-len400")
MODES = (
    "plain",
    "rnnsearch-graph",
    "rnnsearch-xla",
    "rnnsearch-jax-stored",
    "rnnsearch-jax-quantile",
    "rnnsearch-jax",
)

CHILD = r"""
import json, sys
mode, cfg, npz, limit, epochs, seed = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
from reference import one_trial_study, plain_fit
if mode == "rnnsearch-jax-quantile":
    import quantile_buckets
    quantile_buckets.install()
if mode == "plain":
    result = plain_fit(cfg, npz, limit, epochs, seed)
else:
    result = one_trial_study(cfg, npz, limit, epochs, seed,
                             backend="jax" if mode.startswith("rnnsearch-jax") else "tensorflow",
                             jit_compile=mode != "rnnsearch-graph")
    result["n_train"] = None
print(json.dumps(result))
"""


def measure(mode: str, cfg: dict, limit: int, epochs: int, seed: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(BENCH)])
    env["KERAS_BACKEND"] = "jax" if mode.startswith("rnnsearch-jax") else "tensorflow"
    env["RNNSEARCH_RECOMPUTE_STEPS"] = "0" if mode == "rnnsearch-jax-stored" else "1"
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
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} {cfg} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per mode (default 3)")
    parser.add_argument("--limit", type=int, default=None, help="reviews (default 5,000)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 3)")
    parser.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), default=list(ISSUE_CONFIGS), metavar="CONFIG"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), default=list(MODES), metavar="MODE"
    )
    args = parser.parse_args()
    limit, epochs = (600, 2) if args.quick else (5000, 3)
    limit, epochs = args.limit or limit, args.epochs or epochs
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    modes = ["plain", *[m for m in args.modes if m != "plain"]]
    results, rows = {}, []
    for name in args.configs:
        cfg = CONFIGS[name]
        if args.quick:
            cfg = {**cfg, "maxlen": min(cfg["maxlen"], 100)}
        # seed-major order: every mode sees the machine in the same state, side by side
        per: dict[str, list[dict]] = {m: [] for m in modes}
        for s in seeds:
            for m in modes:
                per[m].append(measure(m, cfg, limit, epochs, s))
                last = per[m][-1]["epochs"]
                print(
                    f"{name} {m} seed {s}: s/epoch {[round(e['seconds'], 2) for e in last]} "
                    f"val_acc {[round(e['val_accuracy'], 4) for e in last]} {per[m][-1]['extra']}",
                    flush=True,
                )
        results[name] = per
        n_train = per["plain"][0]["n_train"]
        steady = {
            m: statistics.mean(e["seconds"] for r in runs for e in (r["epochs"][1:] or r["epochs"]))
            for m, runs in per.items()
        }
        first_excess = {
            m: statistics.mean(r["epochs"][0]["seconds"] for r in runs) - steady[m]
            for m, runs in per.items()
        }
        final = {
            m: statistics.mean(r["epochs"][-1]["val_accuracy"] for r in runs)
            for m, runs in per.items()
        }
        for m in modes:
            extras = [r["extra"] for r in per[m]]
            comp = extras[0].get("compilations") if extras and extras[0] else None
            secs = [
                e.get("compile_seconds")
                for e in extras
                if e and e.get("compile_seconds") is not None
            ]
            rows.append(
                [
                    name,
                    m,
                    round(1000 * steady[m] / n_train, 3),
                    round(steady[m] / steady["plain"], 2),
                    round(first_excess[m], 1),
                    comp if comp is not None else "-",
                    round(statistics.mean(secs), 1) if secs else "-",
                    round(final[m], 4),
                ]
            )
    headers = [
        "config",
        "mode",
        "ms/example",
        "ratio_to_plain",
        "first_epoch_excess_s",
        "compilations",
        "compile_s",
        "val_acc_mean",
    ]
    print(table(headers, rows))
    path = write_result(
        "compiled_steps-quick" if args.quick else "compiled_steps",
        {
            "settings": {"limit": limit, "epochs": epochs, "seeds": seeds, "modes": modes},
            "runs": results,
            "headers": headers,
            "table": rows,
            "targets": {"gru32-len200": 0.4, "lstm64-len500": 0.3},
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
