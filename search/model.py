"""Build a Keras model from a trial's configuration: a pure function of (config, input spec)."""

from __future__ import annotations

from typing import Any

from search import tfenv

tfenv.quiet_import()

import keras  # noqa: E402

from search.data import InputSpec  # noqa: E402
from search.errors import TrialFailed  # noqa: E402
from search.serving_layers import (  # noqa: E402 - registers all of rnnsearch's layers
    MaskedGlobalAveragePooling1D,
    MaskedGlobalMaxPooling1D,
)


@keras.saving.register_keras_serializable(package="rnnsearch")
class JordanCell(keras.layers.Layer):
    """A Jordan recurrent cell: the previous *output*, not the hidden state, is fed back.

    h_t = f(W x_t + U y_{t-1} + b)
    y_t = g(V h_t + c)

    The state carried between steps is y_{t-1}; use the cell through ``keras.layers.RNN``.
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        output_activation: str = "tanh",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.output_activation = keras.activations.get(output_activation)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape: Any) -> None:
        features = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(features, self.units), initializer="glorot_uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.output_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="glorot_uniform", name="output_kernel"
        )
        self.output_bias = self.add_weight(
            shape=(self.units,), initializer="zeros", name="output_bias"
        )
        self.built = True

    def call(self, inputs: Any, states: Any, training: bool = False) -> Any:
        prev_output = states[0] if isinstance(states, (list, tuple)) else states
        if training and self.dropout > 0:
            inputs = keras.random.dropout(inputs, self.dropout, seed=self.seed_generator)
        if training and self.recurrent_dropout > 0:
            prev_output = keras.random.dropout(
                prev_output, self.recurrent_dropout, seed=self.seed_generator
            )
        ops = keras.ops
        hidden = self.activation(
            ops.matmul(inputs, self.kernel)
            + ops.matmul(prev_output, self.recurrent_kernel)
            + self.bias
        )
        output = self.output_activation(ops.matmul(hidden, self.output_kernel) + self.output_bias)
        return output, [output]

    def get_initial_state(self, batch_size: Any = None) -> list[Any]:
        return [keras.ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "output_activation": keras.activations.serialize(self.output_activation),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }


def _recurrent_layer(
    config: dict[str, Any], return_sequences: bool, index: int
) -> keras.layers.Layer:
    cell = config["cell"]
    units = int(config["units"])
    common = {
        "dropout": float(config["dropout"]),
        "recurrent_dropout": float(config["recurrent_dropout"]),
        "return_sequences": return_sequences,
        "name": f"{cell}_{index}",
    }
    activation = config.get("activation") or "tanh"
    if cell == "simple":
        return keras.layers.SimpleRNN(units, activation=activation, **common)
    if cell == "lstm":
        return keras.layers.LSTM(units, **common)
    if cell == "gru":
        return keras.layers.GRU(units, **common)
    if cell == "jordan":
        jordan = JordanCell(
            units,
            activation=activation,
            dropout=common.pop("dropout"),
            recurrent_dropout=common.pop("recurrent_dropout"),
        )
        return keras.layers.RNN(jordan, **common)
    raise TrialFailed(f"cell {cell!r}: expected one of simple, jordan, lstm, gru")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "adamax":
        return keras.optimizers.Adamax(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    raise TrialFailed(f"optimizer {name!r}: expected one of adam, rmsprop, adamax, sgd")


def wants_jit(jit_compile: bool | None) -> bool:
    """Whether a model compiles its steps: JAX always does (without jit it runs op by op);
    under TensorFlow, XLA only when asked (``--jit``).

    XLA pays back its compilations (one per batch shape, 20-30 s a trial on 2 cores) only on
    long unidirectional trials, and made a bidirectional GRU-64 two to four times slower per
    epoch (bench/compiled_steps.py); a search's trials are mostly short (pruned after an epoch
    or two), so the default leaves TensorFlow's graphs uncompiled.
    """
    if keras.backend.backend() == "jax":
        return True
    return bool(jit_compile)


def build_model(
    config: dict[str, Any],
    spec: InputSpec,
    *,
    jit_compile: bool = False,
    mask_padding: bool = False,
) -> keras.Model:
    """The compiled model for one configuration (every dimension of the space resolved).

    ``jit_compile``: compiled training steps (XLA under TensorFlow); see :func:`wants_jit`.
    ``mask_padding``: the same network (same weights) with every padding step masked, pooling
    over time included (an empty sequence pools to zeros), so each row's result is the one it
    gets alone (the saved raw-input models of :mod:`search.serving` use it for models trained
    on batches by length).
    """
    # Variable length (bucketing): each batch is padded to its longest sequence only, so any
    # length up to maxlen comes in. Pre-padding stays unmasked as with fixed length (a sorted
    # batch keeps few pads; a mask would double the CPU time per step); post-padding is masked.
    steps = None if getattr(spec, "variable_length", False) else spec.maxlen
    if spec.kind == "tokens":
        inputs = keras.Input(shape=(steps,), dtype="int32", name="tokens")
        # Post-padding puts zeros after the text: mask them so the last state is the text's.
        x = keras.layers.Embedding(
            int(spec.vocab_size),
            int(config["embedding_dim"]),
            mask_zero=mask_padding or config["padding"] == "post",
            name="embedding",
        )(inputs)
    else:
        # Numeric input skips the embedding; all-zero steps are padding (search.data makes sure
        # no real standardised step is all zeros).
        inputs = keras.Input(shape=(steps, int(spec.features)), dtype="float32", name="features")
        x = keras.layers.Masking(mask_value=0.0, name="masking")(inputs)
    layers = int(config["layers"])
    head = config["head"]
    for i in range(layers):
        return_sequences = i < layers - 1 or head != "last"
        layer = _recurrent_layer(config, return_sequences, i)
        if config["bidirectional"]:
            layer = keras.layers.Bidirectional(
                layer, merge_mode=config.get("merge_mode") or "concat", name=f"bi_{layer.name}"
            )
        x = layer(x)
    if head == "max" and mask_padding:
        x = MaskedGlobalMaxPooling1D(name="max_over_time")(x)
    elif head == "max":
        x = keras.layers.GlobalMaxPooling1D(name="max_over_time")(x)
    elif head == "average" and mask_padding:
        x = MaskedGlobalAveragePooling1D(name="average_over_time")(x)
    elif head == "average":
        x = keras.layers.GlobalAveragePooling1D(name="average_over_time")(x)
    if spec.num_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="output")(x)
        loss = "binary_crossentropy"
    else:
        outputs = keras.layers.Dense(spec.num_classes, activation="softmax", name="output")(x)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inputs, outputs, name="rnnsearch")
    model.compile(
        optimizer=make_optimizer(config["optimizer"], float(config["learning_rate"])),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=bool(jit_compile) or keras.backend.backend() == "jax",
    )
    return model


def set_jit_compile(model: keras.Model, jit_compile: bool) -> None:
    """Compiled steps on or off for a loaded model (a checkpoint keeps the setting it was saved
    with; the run's setting wins)."""
    wanted = bool(jit_compile) or keras.backend.backend() == "jax"
    if bool(model.jit_compile) != wanted:
        model.jit_compile = wanted
        model.train_function = model.test_function = model.predict_function = None
