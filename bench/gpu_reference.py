"""The three reference configurations on a GPU, under Keras' JAX backend (no TensorFlow needed).

    KERAS_BACKEND=jax python bench/gpu_reference.py --data ../shared/data/imdb/imdb.npz
    python bench/gpu_reference.py --data imdb.npz --limit 5000 --epochs 3 --configs gru32-len200

For each configuration (bench/compiled_steps.py's: GRU-32 at maxlen 200, LSTM-64 at maxlen 500,
bidirectional GRU-64 with max pooling at maxlen 400) two runs, one after the other in this one
process: ``rnnsearch``, a one-trial study through rnnsearch's service (its data preparation,
batches by length on at most 8 widths, its model builder and runner) with ``--backend jax``;
``plain``, ``model.fit`` on arrays padded to maxlen, Keras' defaults under JAX. Printed: seconds
per epoch, validation accuracy per epoch, and rnnsearch's count and seconds of compilations.
This is the GPU check of issue 17; it needs jax with a GPU, keras, and rnnsearch's pure-Python
dependencies (optuna, sqlalchemy), not TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiled_steps import CONFIGS  # noqa: E402
from reference import one_trial_study, plain_fit  # noqa: E402


def through_rnnsearch(cfg: dict, data: str, limit: int | None, epochs: int, seed: int) -> dict:
    result = one_trial_study(cfg, data, limit, epochs, seed, backend="jax")
    return {
        "seconds": [round(e["seconds"] or 0.0, 2) for e in result["epochs"]],
        "val_accuracy": [round(e["val_accuracy"] or 0.0, 4) for e in result["epochs"]],
        "compilations": result["extra"]["compilations"],
        "compile_seconds": result["extra"]["compile_seconds"],
    }


def plain(cfg: dict, data: str, limit: int | None, epochs: int, seed: int) -> dict:
    result = plain_fit(cfg, data, limit, epochs, seed)
    return {
        "seconds": [round(e["seconds"], 2) for e in result["epochs"]],
        "val_accuracy": [round(e["val_accuracy"], 4) for e in result["epochs"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="IMDB .npz (Keras layout)")
    parser.add_argument("--limit", type=int, default=None, help="reviews (default: all 25,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    import jax
    import keras

    print(
        json.dumps(
            {
                "keras": keras.__version__,
                "backend": keras.backend.backend(),
                "jax": jax.__version__,
                "devices": [str(d) for d in jax.devices()],
            }
        ),
        flush=True,
    )
    for name in args.configs:
        for mode, run in (("rnnsearch", through_rnnsearch), ("plain", plain)):
            started = time.perf_counter()
            out = run(CONFIGS[name], args.data, args.limit, args.epochs, args.seed)
            out.update(config=name, mode=mode, wall_s=round(time.perf_counter() - started, 1))
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
