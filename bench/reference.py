"""The two runs the speed benchmarks compare: one configuration as a one-trial study through
rnnsearch, and the same network as a plain ``model.fit`` on arrays padded to maxlen.

bench/compiled_steps.py, bench/per_epoch.py and bench/gpu_reference.py all use these (the first
two from child processes, one per measurement). Nothing here imports Keras before it is called,
so the caller chooses the backend (``KERAS_BACKEND``) first.

A configuration is a dict with ``cell``, ``units``, ``bidirectional``, ``maxlen`` and optionally
``head`` (``"last"`` or ``"max"``: max pooling over time); both runs use an Embedding of 32 over
a vocabulary of 10,000, Adam 1e-3 and batches of 64, on the same training and validation reviews.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

#: Every other dimension of the reference study, fixed as the plain model has it.
FIXED_DIMENSIONS: dict[str, Any] = {
    "embedding_dim": 32,
    "vocab_size": 10000,
    "learning_rate": 0.001,
    "batch_size": 64,
    "layers": 1,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "optimizer": "adam",
    "padding": "pre",
}


def _toml_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def one_trial_study(
    cfg: dict[str, Any],
    data: str,
    limit: int | None,
    epochs: int,
    seed: int,
    *,
    fixed: dict[str, Any] | None = None,
    **request: Any,
) -> dict[str, Any]:
    """Train ``cfg`` as the one trial of a fresh study through rnnsearch's service (its data
    preparation, batches by length, model builder and runner). ``fixed``: the other dimensions
    (default :data:`FIXED_DIMENSIONS`); ``request``: more fields of ``RunRequest`` (``backend``,
    ``jit_compile``, ``bucketing``). Returns each epoch's seconds and validation accuracy and
    the trial's record of its backend and compilations."""
    from search.service import RunRequest, run_search
    from storage import StudyDatabase

    with tempfile.TemporaryDirectory(prefix="rnnsearch-bench-") as tmp:
        dims = {**cfg, **(FIXED_DIMENSIONS if fixed is None else fixed)}
        Path(tmp, "space.toml").write_text(
            "[dimensions]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in dims.items())
        )
        url = f"sqlite:///{tmp}/study.db"
        run_search(
            RunRequest(
                study="reference",
                storage=url,
                space=f"{tmp}/space.toml",
                trials=1,
                data=data,
                limit=limit,
                max_epochs=epochs,
                seed=seed,
                **request,
            )
        )
        db = StudyDatabase(url)
        [trial] = [t for t in db.trials("reference") if t.state == "complete"]
        epochs_done = db.epochs(trial.trial_id)
        db.dispose()
    return {
        "epochs": [{"seconds": e.seconds, "val_accuracy": e.val_accuracy} for e in epochs_done],
        "extra": {
            k: trial.extra.get(k)
            for k in (
                "backend",
                "jit_compile",
                "compilations",
                "compile_seconds",
                "recomputed_steps",
            )
        },
    }


def plain_fit(
    cfg: dict[str, Any], data: str, limit: int | None, epochs: int, seed: int
) -> dict[str, Any]:
    """The same network as people write it: ``model.fit`` on arrays padded to maxlen by
    ``keras.utils.pad_sequences``, Keras' defaults under the running backend. Returns each
    epoch's seconds and validation accuracy and the number of training reviews."""
    from search import tfenv

    tfenv.quiet_import()
    import keras
    import numpy as np

    from search.data import load_source

    source = load_source(data, limit=limit)
    train, val = source.split()
    offsets = source.train.offsets
    lists = [
        np.where(source.train.tokens[a:b] < 10000, source.train.tokens[a:b], 2)
        for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ]
    x = keras.utils.pad_sequences(lists, maxlen=cfg["maxlen"])
    y = source.train.labels
    keras.utils.set_random_seed(seed)
    cell = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    max_head = cfg.get("head") == "max"
    rnn = cell[cfg["cell"]](cfg["units"], return_sequences=max_head)
    if cfg["bidirectional"]:
        rnn = keras.layers.Bidirectional(rnn)
    layers = [keras.Input((cfg["maxlen"],), dtype="int32"), keras.layers.Embedding(10000, 32), rnn]
    if max_head:
        layers.append(keras.layers.GlobalMaxPooling1D())
    model = keras.Sequential([*layers, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    rows: list[dict[str, float]] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            rows.append(
                {
                    "seconds": time.perf_counter() - self.started,
                    "val_accuracy": float((logs or {})["val_accuracy"]),
                }
            )

    model.fit(
        x[train],
        y[train],
        validation_data=(x[val], y[val]),
        epochs=epochs,
        batch_size=64,
        verbose=0,
        callbacks=[EpochTimer()],
    )
    return {"epochs": rows, "extra": {}, "n_train": int(len(train))}
