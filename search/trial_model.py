"""``rnnsearch model``: a trial's own trained network from its kept checkpoint, no retraining.

The weights are those of the trial's best epoch (the epoch its value was measured on), restored
through the checkpoint store's checks (this study, this lineage, this configuration, this data,
the recorded parameter count). They are scored again on the study's validation split the way
the search scored them, which must give the trial's recorded validation accuracy; the model is
then saved with raw input (:mod:`search.serving`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.errors import UsageError
from search.validation import check_model_file
from storage import StudyDatabase


@dataclass(frozen=True)
class TrialModel:
    study: str
    trial: int
    epoch: int
    #: The trial's recorded validation accuracy (its value) and the restored weights' score on
    #: the validation split, batched as in the search: equal for the trial's own weights (the
    #: tests check it; compiled steps, XLA, may round a borderline review the other way).
    recorded_val_accuracy: float
    val_accuracy: float
    #: The saved model's score on the validation split, each example as it scores alone.
    saved_val_accuracy: float
    validation_examples: int
    saved: str
    input: str
    classes: list[str]
    param_count: int
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_trial_model(
    db: StudyDatabase,
    study: str,
    *,
    trial: int | None,
    save: str | Path,
    word_index: str | None = None,
) -> TrialModel:
    from search.retrain import _data_location, choose_trial

    path = check_model_file("--save", save)
    stored = db.study_config(study)
    if stored is None:
        raise UsageError(
            f"study {study!r} was not created by rnnsearch: its checkpoints are unknown"
        )
    rec = choose_trial(db, study, trial)
    epoch = rec.extra.get("best_epoch")
    if epoch is None or rec.value is None:
        raise UsageError(f"--trial {rec.number}: the trial recorded no validation accuracy")
    epoch = int(epoch)
    from search.artefacts import StudyArtefacts

    store = StudyArtefacts.of(db, stored).checkpoints()
    lineage = int(rec.extra.get("lineage", rec.number))
    not_kept = (
        f"trial {rec.number}: the checkpoint of its best epoch ({epoch}) was not kept (a study "
        "keeps those of its best --keep-checkpoints trials, 3 unless set); `rnnsearch retrain "
        f"{study} --trial {rec.number}` trains that configuration again"
    )
    checkpoint = store.lineage_dir(lineage) / f"epoch-{epoch:04d}"
    if not checkpoint.is_dir():
        from search.artefacts import KIND_CHECKPOINT

        # rnnsearch forgets a lineage's record when it removes the folder itself
        kept = any(a.lineage == lineage for a in db.artefacts(str(stored.uid), KIND_CHECKPOINT))
        if kept:
            raise UsageError(
                f"trial {rec.number}: the checkpoint of its best epoch ({epoch}) is missing: "
                f"{checkpoint} was kept by the study but is not there (moved or deleted outside "
                f"rnnsearch?); `rnnsearch retrain {study} --trial {rec.number}` trains that "
                "configuration again"
            )
        raise UsageError(not_kept)

    from search.data import load_source

    options = stored.data.get("options") or None
    source = load_source(
        _data_location(stored.data), limit=stored.data.get("limit"), options=options
    )
    from search import tfenv

    tfenv.quiet_import()
    import keras

    from search import serving
    from search.datasets.batching import fit_inputs

    cfg = dict(rec.config)
    words = serving.imdb_words(source, cfg, word_index)  # a bad --word-index before any work
    prepared = source.prepare(cfg)
    keras.backend.clear_session(free_memory=True)
    restored = store.load(lineage, cfg, prepared.fingerprint, epoch=epoch)
    if restored is None:
        raise UsageError(
            f"trial {rec.number}: the checkpoint of epoch {epoch} does not match the trial "
            "(another study, configuration or data, or an unreadable file); not restored"
        )
    if int(restored.model.count_params()) != int(rec.param_count or 0):
        raise UsageError(
            f"trial {rec.number}: the checkpoint's model has {restored.model.count_params()} "
            f"parameters, the trial recorded {rec.param_count}; not restored"
        )
    # The validation batches exactly as the search's fit made them (widths shared with the
    # training batches), so the restored weights score what the trial recorded.
    batch_size = int(cfg["batch_size"])
    validation = fit_inputs(prepared, batch_size)["validation_data"]
    if isinstance(validation, tuple):
        scored = restored.model.evaluate(*validation, batch_size=batch_size, verbose=0)
    else:
        scored = restored.model.evaluate(validation, verbose=0)
    val_accuracy = float(scored[1])
    served = serving.raw_input_model(restored.model, cfg, source, words=words)
    saved_score = serving.score_prepared(
        served, prepared.x_val, prepared.y_val, prepared.len_val, prepared.spec, prepared.padding
    )
    served.save(path)
    return TrialModel(
        study=study,
        trial=rec.number,
        epoch=epoch,
        recorded_val_accuracy=float(rec.value),
        val_accuracy=float(val_accuracy),
        saved_val_accuracy=saved_score.accuracy,
        validation_examples=len(prepared.y_val),
        saved=str(path),
        input=serving.input_kind(served),
        classes=serving.names_of(served),
        param_count=int(restored.model.count_params()),
        config=cfg,
    )
