"""``rnnsearch retrain``: train a chosen trial's configuration on the whole training set.

The only place rnnsearch touches the test set: the retrained model is evaluated on it once, and
its test loss and accuracy are recorded against the trial, where ``best --with-test`` shows them.
The saved model takes raw input (:mod:`search.serving`) and the test set is scored the way that
model predicts (each example as it scores alone), so the file reproduces the recorded figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.errors import SearchError, UsageError
from search.validation import check_model_file
from storage import StudyConfig, StudyDatabase, TrialRecord


@dataclass(frozen=True)
class RetrainResult:
    study: str
    trial: int
    trial_id: int
    epochs: int
    train_examples: int
    test_examples: int
    test_loss: float
    test_accuracy: float
    seconds: float
    saved: str
    param_count: int
    config: dict[str, Any]
    #: What the saved model takes: text, token_ids or sequences (search.serving).
    input: str = "token_ids"
    classes: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_trial(db: StudyDatabase, study: str, number: int | None) -> TrialRecord:
    """The trial ``number`` (it must have trained), or the study's best complete trial."""
    if number is None:
        best = db.best(study, top=1)
        if not best:
            raise UsageError(f"study {study!r} has no complete trial to retrain yet")
        return best[0]
    trials = db.trials(study)
    rec = next((t for t in trials if t.number == number), None)
    if rec is None:
        last = max((t.number for t in trials), default=None)
        known = f"trials 0-{last}" if last is not None else "no trials"
        raise UsageError(f"--trial {number}: study {study!r} has {known}")
    if rec.state not in ("complete", "pruned") or not rec.config:
        raise UsageError(
            f"--trial {number}: trial is {rec.state}; expected a complete or pruned trial"
        )
    return rec


def check_retrainable(
    db: StudyDatabase, study: str, trial: int | None
) -> tuple[StudyConfig, TrialRecord]:
    """The stored study and the trial ``retrain`` would train (refusing what it cannot)."""
    stored = db.study_config(study)
    if stored is None:
        raise UsageError(
            f"study {study!r} was not created by rnnsearch: its data is unknown, cannot retrain"
        )
    return stored, choose_trial(db, study, trial)


def _data_location(data: dict[str, Any]) -> str:
    source = str(data.get("source") or "")
    path = data.get("path")
    if source != "imdb" and path and Path(path).exists():
        return str(path)
    return source


def _stop_on_nan(keras: Any) -> Any:
    """Like keras.callbacks.TerminateOnNaN, without its print to stdout (JSON output)."""

    class StopOnNaN(keras.callbacks.Callback):
        def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True

    return StopOnNaN()


def retrain(
    db: StudyDatabase,
    study: str,
    *,
    trial: int | None = None,
    epochs: int | None = None,
    save: str | Path | None = None,
    limit: int | None = None,
    verbose: int = 0,
    word_index: str | None = None,
) -> RetrainResult:
    """Train the trial's configuration on all training data (or a ``limit`` slice), evaluate on
    the test set, record the test metrics and save the model as a ``.keras`` file."""
    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs {epochs}: expected a positive integer")
    stored, rec = check_retrainable(db, study, trial)
    from search.artefacts import StudyArtefacts

    artefacts: StudyArtefacts | None = None
    if save is None:
        artefacts = StudyArtefacts.of(db, stored)
        path = artefacts.default_model_path(rec.number)
    else:
        path = check_model_file("--save", save)
    if epochs is None:
        epochs = int(rec.extra.get("best_epoch") or rec.config.get("epochs") or rec.epochs or 1)

    from search.backend import activate, loaded_backend
    from search.data import check_unchanged, load_source

    check_unchanged(stored.data, _data_location(stored.data), study)

    # TensorFlow whatever backend searched the study (the weights are the same): the saved
    # model reads raw input through TensorFlow's string ops. A process that already runs Keras
    # on another backend is refused by check_backend below, before any training.
    activate(loaded_backend() or "tensorflow")
    source = load_source(
        _data_location(stored.data), limit=limit, options=stored.data.get("options") or None
    )

    from search import tfenv

    tfenv.quiet_import()
    import keras

    from search import serving
    from search.datasets.batching import training_inputs
    from search.model import build_model, wants_jit

    serving.check_backend()  # before training: the saved model reads raw input through TensorFlow
    # before training too: the word index turns the saved model's raw text into word ids
    words = serving.imdb_words(source, rec.config, word_index)

    cfg = dict(rec.config)
    full = source.prepare_full(cfg)
    # Batches by length when the search trained that way: the trial's validation score came
    # from such batches, and a model trained on them is scored on them (test set included).
    bucketing = full.spec.variable_length
    batch_size = int(cfg["batch_size"])
    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(((stored.seed or 0) + rec.number) % (2**32 - 1))
    started = time.perf_counter()
    jit = wants_jit(stored.options.get("jit_compile"))
    model = build_model(cfg, full.spec, jit_compile=jit)
    history = model.fit(
        **training_inputs(
            full.x_train, full.y_train, full.len_train, batch_size, full.padding, bucketing
        ),
        epochs=int(epochs),
        verbose=verbose,
        callbacks=[_stop_on_nan(keras)],
    )
    losses = [float(v) for v in history.history.get("loss", [])]
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        raise SearchError(
            f"retraining trial {rec.number} diverged at epoch {bad + 1} (training loss not "
            f"finite) on {len(full.y_train)} examples; nothing was recorded or saved (try another "
            "--trial or fewer --epochs)"
        )
    served = serving.raw_input_model(model, cfg, source, words=words)
    score = serving.score_prepared(
        served, full.x_test, full.y_test, full.len_test, full.spec, full.padding
    )
    loss, accuracy = score.loss, score.accuracy
    if not (math.isfinite(loss) and math.isfinite(accuracy)):
        raise SearchError(
            f"retraining trial {rec.number}: the test loss is not finite ({loss}); "
            "nothing was recorded or saved"
        )
    seconds = time.perf_counter() - started
    if artefacts is not None:
        artefacts.save_model(served, path, rec.trial_id)
    else:
        served.save(path)
    db.record_test_metrics(rec.trial_id, float(loss), float(accuracy))
    db.record_trial_info(
        trial_id=rec.trial_id,
        study_id=stored.study_id,
        number=rec.number,
        engine=rec.engine or stored.engine,
        config=rec.config,
        status=rec.state,
        extra={
            "retrain": {
                "epochs": int(epochs),
                "train_examples": int(len(full.y_train)),
                "test_examples": int(len(full.y_test)),
                "limit": limit,
                "seconds": round(seconds, 3),
                "saved": str(path.resolve()),
                "input": serving.input_kind(served),
                "scored": "each test example as it scores alone (the saved model's predictions)",
            }
        },
    )
    return RetrainResult(
        study=study,
        trial=rec.number,
        trial_id=rec.trial_id,
        epochs=int(epochs),
        train_examples=int(len(full.y_train)),
        test_examples=int(len(full.y_test)),
        test_loss=float(loss),
        test_accuracy=float(accuracy),
        seconds=seconds,
        saved=str(path),
        param_count=int(model.count_params()),
        config=cfg,
        input=serving.input_kind(served),
        classes=serving.names_of(served),
    )
