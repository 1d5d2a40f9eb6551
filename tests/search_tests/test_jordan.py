"""The Jordan cell: the recurrence it computes, training, and saving."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from search.data import InputSpec
from search.model import JordanCell, build_model


def _numpy_jordan(x, W, U, b, V, c, f=np.tanh, g=np.tanh):
    """h_t = f(W x_t + U y_{t-1} + b), y_t = g(V h_t + c), y_0 = 0; all outputs."""
    batch, steps, _ = x.shape
    y = np.zeros((batch, V.shape[1]))
    outs = []
    for t in range(steps):
        h = f(x[:, t] @ W + y @ U + b)
        y = g(h @ V + c)
        outs.append(y)
    return np.stack(outs, axis=1)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_jordan_cell_matches_the_recurrence_computed_by_hand(activation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 4)).astype("float32")
    layer = keras.layers.RNN(JordanCell(5, activation=activation), return_sequences=True)
    layer(x)
    cell = layer.cell
    W, U, b, V, c = (keras.ops.convert_to_numpy(w) for w in (
        cell.kernel, cell.recurrent_kernel, cell.bias, cell.output_kernel, cell.output_bias
    ))  # fmt: skip
    # Non-zero biases, so a bias that is ignored or misplaced shows.
    b = rng.normal(size=b.shape).astype("float32")
    c = rng.normal(size=c.shape).astype("float32")
    cell.bias.assign(b)
    cell.output_bias.assign(c)
    got = keras.ops.convert_to_numpy(layer(x))
    f = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0.0))
    want = _numpy_jordan(x.astype("float64"), W, U, b, V, c, f=f)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_jordan_feeds_back_the_output_not_the_hidden_state():
    """With V = 0 the output is g(c) at every step, so the feedback term U y_{t-1} is constant:
    an Elman cell (feeding h back) would still vary with history, a Jordan cell does not."""
    x = np.random.default_rng(1).normal(size=(2, 6, 3)).astype("float32")
    layer = keras.layers.RNN(JordanCell(4), return_sequences=True)
    layer(x)
    layer.cell.output_kernel.assign(np.zeros((4, 4), "float32"))
    layer.cell.output_bias.assign(np.full((4,), 0.5, "float32"))
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, np.tanh(0.5) * np.ones_like(out), rtol=1e-6)


def _tiny_config(**over):
    cfg = {
        "cell": "jordan", "units": 6, "layers": 1, "bidirectional": False, "merge_mode": "concat",
        "activation": "tanh", "dropout": 0.0, "recurrent_dropout": 0.0, "head": "last",
        "embedding_dim": 8, "vocab_size": 50, "maxlen": 12, "padding": "pre",
        "optimizer": "adam", "learning_rate": 1e-2, "batch_size": 16, "epochs": 1,
    }  # fmt: skip
    cfg.update(over)
    return cfg


def _learnable_tokens(n=256, maxlen=12, seed=0):
    """Label 1 when token 7 occurs in the sequence: a Jordan network learns it in a few epochs."""
    rng = np.random.default_rng(seed)
    x = rng.integers(8, 50, size=(n, maxlen)).astype("int32")
    y = rng.integers(0, 2, size=n).astype("int32")
    pos = rng.integers(0, maxlen, size=n)
    x[y == 1, pos[y == 1]] = 7
    return x, y


def test_jordan_model_trains_for_an_epoch_and_its_loss_falls():
    keras.utils.set_random_seed(3)
    spec = InputSpec(kind="tokens", maxlen=12, num_classes=2, vocab_size=50)
    model = build_model(_tiny_config(), spec)
    assert any(isinstance(getattr(layer, "cell", None), JordanCell) for layer in model.layers)
    x, y = _learnable_tokens()
    before = model.evaluate(x, y, verbose=0)[0]
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    after = model.evaluate(x, y, verbose=0)[0]
    assert np.isfinite(history.history["loss"][0])
    assert after < before


@pytest.mark.parametrize("bidirectional", [False, True])
def test_jordan_model_round_trips_through_a_keras_file(tmp_path: Path, bidirectional):
    keras.utils.set_random_seed(4)
    spec = InputSpec(kind="tokens", maxlen=12, num_classes=2, vocab_size=50)
    cfg = _tiny_config(bidirectional=bidirectional, layers=2, activation="relu")
    model = build_model(cfg, spec)
    x, y = _learnable_tokens(64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "jordan.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )
    cells = [layer for layer in loaded.layers if "jordan" in layer.name]
    assert cells, [layer.name for layer in loaded.layers]
