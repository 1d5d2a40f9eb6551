"""Models that take raw input: what ``retrain --save`` and ``model --save`` write.

A trained network takes what the search fed it: token ids of the study's vocabulary, or
standardised feature vectors, truncated and padded. The saved model wraps it (same weights)
between layers that do that preparation inside the model (:mod:`search.serving_layers`), so
it takes what a user has:

* text studies (CSV, JSONL, text folders): strings, through a ``TextVectorization`` layer
  holding the study's fitted vocabulary and text rules;
* Keras' IMDB file: strings when its word index is known (``imdb_word_index.json`` beside the
  data file, Keras' cached copy, or ``--word-index``), else word ids as in that file;
* numeric studies: raw (unstandardised) sequences, shape (batch, steps, features), float64,
  shorter sequences padded at the end with NaN rows.

The output is one probability per class; the class names travel in the file (layer
``class_probabilities``). The trained network is the layer ``classifier``. A model trained on
batches by length is saved with its padding masked, so each example's prediction is the one it
gets alone, whatever it is batched with; this is also how ``retrain`` scores the test set, so a
saved model reproduces its recorded test accuracy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import UsageError

WORD_INDEX_FILE = "imdb_word_index.json"
CLASSIFIER = "classifier"
CLASS_LAYER = "class_probabilities"
WINDOW_LAYER = "window"
#: Examples per batch when a saved model scores or predicts.
PREDICT_BATCH = 256


@dataclass(frozen=True)
class Score:
    loss: float
    accuracy: float
    examples: int


def class_names(classes: list[Any] | None, num_classes: int) -> list[str]:
    """The study's classes as names (strings), in label order."""
    names = [str(c) for c in (classes or range(num_classes))]
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def find_word_index(description: dict[str, Any], explicit: str | None = None) -> Path | None:
    """The IMDB word index for a study on Keras' IMDB file: ``explicit`` (it must exist), else
    ``imdb_word_index.json`` beside the data file, else Keras' cached copy; None if none."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise UsageError(f"--word-index {explicit}: no such file; expected {WORD_INDEX_FILE}")
        return path
    candidates = []
    if description.get("path"):
        candidates.append(Path(description["path"]).parent / WORD_INDEX_FILE)
    candidates.append(Path.home() / ".keras" / "datasets" / WORD_INDEX_FILE)
    return next((p for p in candidates if p.is_file()), None)


def imdb_words(
    source: Any, config: dict[str, Any], explicit: str | None = None
) -> list[str] | None:
    """The words a raw-input model of a study on Keras' IMDB file reads text with
    (:func:`find_word_index`, then :func:`load_word_index`), or None: other data, or no word
    index found (the model then reads word ids). Called before any training, so that a bad
    ``--word-index`` is refused first."""
    if source.description.get("format") != "imdb-npz":
        return None
    path = find_word_index(source.description, explicit)
    return load_word_index(path, int(config["vocab_size"])) if path is not None else None


def load_word_index(path: Path, vocab_size: int) -> list[str]:
    """Words by rank (index r - 1 holds the word of rank r), the ranks a model of
    ``vocab_size`` ids can use (rank + 3 < vocab_size)."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the word index as JSON: {exc}") from None
    if not isinstance(index, dict) or not all(
        isinstance(w, str) and isinstance(r, int) and not isinstance(r, bool)
        for w, r in index.items()
    ):
        raise UsageError(f"{path}: expected a JSON object of word -> rank (an integer)")
    top = max(0, vocab_size - 4)
    # A rank the index lacks gets a placeholder no text can produce (NUL is never a word).
    words = [f"\x00{r}" for r in range(1, top + 1)]
    for word, rank in index.items():
        if 1 <= rank <= top:
            words[rank - 1] = word
    return words


def classifier(trained: Any, config: dict[str, Any], spec: Any) -> Any:
    """The trained network as the saved model's ``classifier``: the same weights, padding
    masked when it was trained on batches by length (each row then scores as it does alone)."""
    import keras

    from search.model import build_model

    net = build_model(config, spec, mask_padding=bool(spec.variable_length))
    net.set_weights(trained.get_weights())
    return keras.Model(net.inputs[0], net.outputs[0], name=CLASSIFIER)


def raw_input_model(
    trained: Any, config: dict[str, Any], source: Any, *, words: list[str] | None = None
) -> Any:
    """The model a user applies to raw input (see the module notes)."""
    import keras

    from search.serving_layers import (
        IMDB_OOV_ID,
        ClassProbabilities,
        ImdbWordIds,
        SequenceWindow,
        Standardise,
        VocabularyCap,
    )

    check_backend()
    spec = source.spec(config)
    net = classifier(trained, config, spec)
    fmt = source.description.get("format")
    if source.kind == "numeric":
        stats = source.standardisation or {}
        if "mean" not in stats:
            raise UsageError(
                f"data {source.description.get('source')}: its standardisation is not in the "
                "data cache (prepared by an older rnnsearch); run the search's data again"
            )
        inputs = keras.Input(shape=(None, int(spec.features)), dtype="float64", name="sequences")
        x = Standardise(stats["mean"], stats["std"], name="standardise")(inputs)
    elif fmt == "imdb-npz":
        vocab = int(config["vocab_size"])
        if words is not None:
            inputs = keras.Input(shape=(), dtype="string", name="text")
            x = ImdbWordIds(words, vocab, name="word_ids")(inputs)
        else:
            inputs = keras.Input(shape=(None,), dtype="int32", name="token_ids")
            x = VocabularyCap(vocab, IMDB_OOV_ID, name="vocabulary_cap")(inputs)
    else:
        if not source.vocabulary:
            raise UsageError(
                f"data {source.description.get('source')}: its vocabulary is not in the data "
                "cache; run the search's data again"
            )
        inputs = keras.Input(shape=(), dtype="string", name="text")
        # The study's TextVectorization (default text rules), vocabulary cut at vocab_size:
        # ids 0 (padding) and 1 (out of vocabulary) are its first two entries.
        x = keras.layers.TextVectorization(
            vocabulary=source.vocabulary[2 : int(config["vocab_size"])],
            output_mode="int",
            name="text_vectorization",
        )(inputs)
    x = SequenceWindow(
        spec.maxlen,
        str(config.get("padding") or "pre"),
        fixed_length=not spec.variable_length,
        name=WINDOW_LAYER,
    )(x)
    probabilities = ClassProbabilities(
        class_names(source.classes, spec.num_classes), name=CLASS_LAYER
    )(net(x))
    return keras.Model(inputs, probabilities, name="rnnsearch_raw_input")


def check_backend() -> None:
    """Raw-input models read text with TensorFlow's string ops: they need its Keras backend."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise UsageError(
            f"raw-input models need Keras' TensorFlow backend (strings, TensorFlow's text ops); "
            f"this process runs {backend}: run the command again with KERAS_BACKEND=tensorflow "
            "(the weights are the same under either backend)"
        )


def input_kind(model: Any) -> str:
    """``text``, ``token_ids`` or ``sequences``: what a saved model takes."""
    dtype = str(model.inputs[0].dtype)
    if "string" in dtype:
        return "text"
    return "sequences" if "float" in dtype else "token_ids"


def names_of(model: Any) -> list[str]:
    return list(model.get_layer(CLASS_LAYER).class_names)


def score_prepared(
    model: Any, x: np.ndarray, y: np.ndarray, lengths: np.ndarray, spec: Any, padding: str
) -> Score:
    """Score a raw-input model's network on prepared (padded) arrays, each row as it scores
    alone: rows sorted by length, every batch cut to its longest row (the padding is masked)."""
    import keras

    from search.datasets.batching import length_batches, length_batches_dataset

    inputs = keras.Input(shape=model.get_layer(CLASSIFIER).inputs[0].shape[1:])
    scorer = keras.Model(inputs, model.get_layer(CLASS_LAYER)(model.get_layer(CLASSIFIER)(inputs)))
    if spec.variable_length:
        sorted_probs = scorer.predict(
            length_batches_dataset(x, y, lengths, PREDICT_BATCH, padding, seed=None), verbose=0
        )
        order = np.concatenate(length_batches(lengths, PREDICT_BATCH)) if len(y) else []
        probs = np.empty_like(sorted_probs)
        probs[order] = sorted_probs
    else:
        probs = scorer.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    return score_probabilities(probs, y)


def score_probabilities(probs: np.ndarray, y: np.ndarray) -> Score:
    """Accuracy of the most probable class, and the mean cross-entropy (probabilities clipped
    at 1e-7 as Keras does)."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return Score(math.nan, math.nan, 0)
    predicted = np.argmax(probs, axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-7, 1.0)
    return Score(float(-np.log(p_true).mean()), float((predicted == y).mean()), int(len(y)))
