"""Keras layers of rnnsearch's raw-input models (``retrain --save``, ``model --save``).

A saved model takes what a user has: review text, or raw numeric sequences. These layers turn
that into what the trained network was fed during the search (the study's vocabulary, Keras'
IMDB word ids, the study's standardisation, truncation and padding), and its output into one
probability per class with the class names attached. They are registered for ``.keras`` files:
``import search.model`` (which imports this module) is all a fresh process needs before
``keras.saving.load_model``. They use TensorFlow ops (string inputs need TensorFlow anyway).
"""

from __future__ import annotations

from typing import Any

from search import tfenv

tfenv.quiet_import()

import keras  # noqa: E402

#: Keras' IMDB reading conventions (search.datasets.imdb): start, out-of-vocabulary, first word.
IMDB_START_ID = 1
IMDB_OOV_ID = 2
IMDB_INDEX_FROM = 3


def _tf() -> Any:
    import tensorflow as tf

    return tf


@keras.saving.register_keras_serializable(package="rnnsearch")
class ImdbWordIds(keras.layers.Layer):
    """Review text to the word ids of Keras' ``imdb.npz`` layout.

    The text is read as the IMDB file was made: lower case, words are runs of ``[a-z0-9']``
    with outer apostrophes stripped (so ``<br />`` is the word ``br``). A word of rank ``r`` in
    the word index becomes ``r + 3``; words outside the ``vocab_size`` most frequent, or not in
    the index, become 2; every review starts with 1. Output: ids padded with 0 at the end.
    """

    def __init__(self, words: list[str], vocab_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.words = [str(w) for w in words]
        self.vocab_size = int(vocab_size)
        self.lookup = keras.layers.StringLookup(
            vocabulary=self.words or ["\x00"], num_oov_indices=1, mask_token=None, name="lookup"
        )

    def build(self, input_shape: Any) -> None:
        # The lookup table is filled from ``words`` in __init__; there are no weights to make.
        self.built = True

    def call(self, inputs: Any) -> Any:
        tf = _tf()
        text = tf.reshape(tf.convert_to_tensor(inputs), [-1])
        text = tf.strings.lower(text, encoding="utf-8")
        text = tf.strings.regex_replace(text, "[^a-z0-9']+", " ")
        words = tf.strings.split(text)
        words = tf.ragged.map_flat_values(tf.strings.regex_replace, words, "^'+|'+$", "")
        words = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
        # StringLookup: index 0 is out of vocabulary, the word of rank r is r.
        rank = tf.ragged.map_flat_values(self.lookup, words)
        rank = tf.cast(rank, "int32")
        ids = tf.ragged.map_flat_values(
            lambda r: tf.where(
                (r > 0) & (r + IMDB_INDEX_FROM < self.vocab_size), r + IMDB_INDEX_FROM, IMDB_OOV_ID
            ),
            rank,
        )
        start = tf.fill([tf.shape(text)[0], 1], tf.constant(IMDB_START_ID, "int32"))
        ids = tf.concat([tf.RaggedTensor.from_tensor(start), ids], axis=1)
        return ids.to_tensor(0)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], None)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "words": self.words, "vocab_size": self.vocab_size}


@keras.saving.register_keras_serializable(package="rnnsearch")
class VocabularyCap(keras.layers.Layer):
    """Token ids at or above ``vocab_size`` become ``oov_id`` (Keras' ``num_words`` rule)."""

    def __init__(self, vocab_size: int, oov_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.oov_id = int(oov_id)

    def call(self, inputs: Any) -> Any:
        ids = keras.ops.cast(inputs, "int32")
        capped = keras.ops.where(ids >= self.vocab_size, self.oov_id, ids)
        return keras.ops.where(ids == 0, 0, capped)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "oov_id": self.oov_id}


@keras.saving.register_keras_serializable(package="rnnsearch")
class Standardise(keras.layers.Layer):
    """Raw numeric steps to the study's standardised ones; padding steps become zeros.

    Input: (batch, steps, features) numbers; a step whose features are all NaN is padding
    (sequences of different lengths are padded at the end with NaN rows). Each feature is
    standardised with the mean and standard deviation fitted on the study's training part, in
    float64 then float32 as the search did; a real step that comes out all zeros is nudged (its
    first feature 1e-6) so that it is not taken for padding.
    """

    def __init__(
        self, mean: list[float], std: list[float], nudge: float = 1e-6, **kwargs: Any
    ) -> None:
        # float64 in (Keras would cast the raw numbers to float32 first), float32 out.
        kwargs["dtype"] = "float64"
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.nudge = float(nudge)

    def call(self, inputs: Any) -> Any:
        tf = _tf()
        x = tf.cast(inputs, "float64")
        pad = tf.reduce_all(tf.math.is_nan(x), axis=-1)
        mean = tf.constant(self.mean, "float64")
        std = tf.constant(self.std, "float64")
        out = tf.cast((tf.where(tf.math.is_nan(x), tf.zeros_like(x), x) - mean) / std, "float32")
        zero = tf.logical_not(tf.reduce_any(out != 0.0, axis=-1)) & tf.logical_not(pad)
        first = tf.one_hot(0, len(self.mean), dtype="float32")
        out = tf.where(zero[..., None], first * self.nudge, out)
        return tf.where(pad[..., None], tf.zeros_like(out), out)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std, "nudge": self.nudge}


@keras.saving.register_keras_serializable(package="rnnsearch")
class SequenceWindow(keras.layers.Layer):
    """Truncate and pad sequences as the search did, one row at a time.

    Input: token ids (batch, steps) or feature vectors (batch, steps, features), each row's
    steps first and zeros after them (a zero id / an all-zero step is padding). A row longer
    than ``maxlen`` keeps its last ``maxlen`` steps (Keras' ``truncating="pre"``); ``padding``
    puts the zeros before ("pre") or after ("post") the steps. ``fixed_length``: every row is
    ``maxlen`` long (the model was trained that way); else the batch is as long as its longest
    row (at least 1), and the network masks the zeros, so a row's result does not depend on
    the rows it is batched with.
    """

    def __init__(self, maxlen: int, padding: str, fixed_length: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maxlen = int(maxlen)
        self.padding = str(padding)
        self.fixed_length = bool(fixed_length)

    def call(self, inputs: Any) -> Any:
        tf = _tf()
        x = tf.convert_to_tensor(inputs)
        real = x != 0 if x.shape.rank == 2 else tf.reduce_any(x != 0, axis=-1)
        lengths = tf.reduce_sum(tf.cast(real, "int32"), axis=1)
        take = tf.minimum(lengths, self.maxlen)
        width = (
            tf.constant(self.maxlen, "int32")
            if self.fixed_length
            else tf.maximum(_max(tf, take), 1)
        )
        cols = tf.range(width)[None, :]
        take_ = take[:, None]
        first = (lengths - take)[:, None]
        if self.padding == "pre":
            lead = width - take_
            valid = cols >= lead
            src = first + cols - lead
        else:
            valid = cols < take_
            src = first + cols
        src = tf.where(valid, src, 0)
        # One zero column at the end, so that an all-empty batch still has something to gather.
        zero = tf.zeros_like(x[:, :1])
        out = tf.gather(tf.concat([x, zero], axis=1), src, batch_dims=1)
        mask = valid if x.shape.rank == 2 else valid[..., None]
        return tf.where(mask, out, tf.zeros_like(out))

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        steps = self.maxlen if self.fixed_length else None
        return (input_shape[0], steps, *input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "maxlen": self.maxlen,
            "padding": self.padding,
            "fixed_length": self.fixed_length,
        }


def _max(tf: Any, values: Any) -> Any:
    """The largest value, 0 for an empty batch."""
    return tf.reduce_max(tf.concat([values, tf.zeros([1], values.dtype)], axis=0))


class _MaskedPooling1D(keras.layers.Layer):
    """Pooling over time that reads the mask and passes none on: (batch, steps, features) to
    (batch, features)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="rnnsearch")
class MaskedGlobalMaxPooling1D(_MaskedPooling1D):
    """Max over time of the unmasked steps only (Keras' GlobalMaxPooling1D ignores the mask)."""

    def call(self, inputs: Any, mask: Any = None) -> Any:
        ops = keras.ops
        if mask is None:
            return ops.max(inputs, axis=1)
        keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
        low = ops.full_like(inputs, float("-inf"))
        best = ops.max(ops.where(keep, inputs, low), axis=1)
        return ops.where(ops.isinf(best), ops.zeros_like(best), best)


@keras.saving.register_keras_serializable(package="rnnsearch")
class MaskedGlobalAveragePooling1D(_MaskedPooling1D):
    """Mean over time of the unmasked steps; zeros for a row with none (an empty text), where
    Keras' GlobalAveragePooling1D divides 0 by 0."""

    def call(self, inputs: Any, mask: Any = None) -> Any:
        ops = keras.ops
        if mask is None:
            return ops.mean(inputs, axis=1)
        keep = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)
        total = ops.sum(inputs * keep, axis=1)
        return total / ops.maximum(ops.sum(keep, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="rnnsearch")
class ClassProbabilities(keras.layers.Layer):
    """One probability per class, in the order of ``class_names`` (which travel in the file).

    A binary network's single sigmoid output p becomes (1 - p, p); a softmax passes through.
    """

    def __init__(self, class_names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        if len(self.class_names) == 2 and inputs.shape[-1] == 1:
            return ops.concatenate([1.0 - inputs, inputs], axis=-1)
        return inputs

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], len(self.class_names))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_names": self.class_names}
