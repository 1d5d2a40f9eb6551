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
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiled_steps import CONFIGS  # noqa: E402


def through_rnnsearch(cfg: dict, data: str, limit: int | None, epochs: int, seed: int) -> dict:
    from search.service import RunRequest, run_search
    from storage import StudyDatabase

    tmp = tempfile.mkdtemp()
    dims = "\n".join(
        f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}"
        for k, v in cfg.items()
    )
    Path(f"{tmp}/s.toml").write_text(
        "[dimensions]\n"
        + dims
        + "\nembedding_dim = 32\nvocab_size = 10000\nlearning_rate = 0.001\n"
        'batch_size = 64\nlayers = 1\ndropout = 0.0\nrecurrent_dropout = 0.0\noptimizer = "adam"\n'
        'padding = "pre"\n'
    )
    url = f"sqlite:///{tmp}/p.db"
    run_search(
        RunRequest(
            study="p",
            storage=url,
            space=f"{tmp}/s.toml",
            trials=1,
            data=data,
            limit=limit,
            max_epochs=epochs,
            seed=seed,
            backend="jax",
        )
    )
    db = StudyDatabase(url)
    [t] = [t for t in db.trials("p") if t.state == "complete"]
    return {
        "seconds": [round(e.seconds or 0.0, 2) for e in db.epochs(t.trial_id)],
        "val_accuracy": [round(e.val_accuracy or 0.0, 4) for e in db.epochs(t.trial_id)],
        "compilations": t.extra.get("compilations"),
        "compile_seconds": t.extra.get("compile_seconds"),
    }


def plain(cfg: dict, data: str, limit: int | None, epochs: int, seed: int) -> dict:
    import keras
    import numpy as np

    from search.data import load_source

    src = load_source(data, limit=limit)
    tr, va = src.split()
    lists = [
        src.train.tokens[a:b]
        for a, b in zip(src.train.offsets[:-1], src.train.offsets[1:], strict=True)
    ]
    lists = [np.where(x < 10000, x, 2) for x in lists]
    x = keras.utils.pad_sequences(lists, maxlen=cfg["maxlen"])
    y = src.train.labels
    keras.utils.set_random_seed(seed)
    cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cfg["cell"]]
    rnn = cell(cfg["units"], return_sequences=cfg["head"] == "max")
    if cfg["bidirectional"]:
        rnn = keras.layers.Bidirectional(rnn)
    layers = [keras.Input((cfg["maxlen"],), dtype="int32"), keras.layers.Embedding(10000, 32), rnn]
    if cfg["head"] == "max":
        layers.append(keras.layers.GlobalMaxPooling1D())
    model = keras.Sequential([*layers, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    rows: list[tuple[float, float]] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            rows.append((time.perf_counter() - self.t, float((logs or {})["val_accuracy"])))

    model.fit(
        x[tr],
        y[tr],
        validation_data=(x[va], y[va]),
        epochs=epochs,
        batch_size=64,
        verbose=0,
        callbacks=[Timer()],
    )
    return {
        "seconds": [round(s, 2) for s, _ in rows],
        "val_accuracy": [round(a, 4) for _, a in rows],
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
