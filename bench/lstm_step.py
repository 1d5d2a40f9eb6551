"""What makes an LSTM-64 training step faster on a CPU? Six forms of the same step, side by side.

    python bench/lstm_step.py            # batch 64, 250 time steps (LSTM-64's mean padded width
                                         # at maxlen 500 on IMDB), Embedding-sized input 32
    python bench/lstm_step.py --quick    # 60 time steps

Pure JAX (no Keras), one jit-compiled gradient of the loss over the input and recurrent kernels
and the input (what a training step spends its time in), each form timed alternately, the best
of ``--repeats`` rounds:

- ``keras-form``: what Keras' LSTM does under JAX: ``lax.scan`` over time, each step multiplying
  the input by the kernel and the state by the recurrent kernel; JAX differentiates the loop.
- ``recomputed``: ``keras-form`` with each step inside ``jax.checkpoint``: the backward pass
  computes the step again instead of reading its stored activations (what rnnsearch does under
  JAX on a CPU for long enough batches, search/train.py).
- ``recomputed-unrolled``: ``recomputed`` with the loop unrolled four steps at a time
  (``lax.scan(unroll=4)``): fewer loop iterations, and XLA may fuse across neighbouring steps.
- ``hoisted``: the input projection of every step in one matrix product before the loop (as
  cuDNN does on a GPU); the loop multiplies only the state. JAX differentiates the loop.
- ``custom-backward``: the hoisted forward plus a hand-written backward pass (``jax.custom_vjp``):
  the backward loop computes only each step's gate gradients and the state's gradient; the
  kernels' gradients are two large matrix products over all steps after the loop.
- ``recomputed-backward``: Keras' forward storing only each step's carried state, and a
  hand-written backward pass that recomputes each step's gates from it (as ``recomputed``) but
  leaves the kernels' and the input's gradients to three large products after the loop.

The script checks that the six forms give the same gradients (relative difference below 1e-4)
before timing them, and reports milliseconds per step of the batch and per training example,
and each form's ratio to ``keras-form``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_result  # noqa: E402

FORMS = (
    "keras-form",
    "recomputed",
    "recomputed-unrolled",
    "hoisted",
    "custom-backward",
    "recomputed-backward",
)


def build(batch: int, steps: int, features: int, units: int):  # noqa: ANN201 - jax functions
    import jax
    import jax.numpy as jnp

    def gates(z, c):  # noqa: ANN001, ANN202
        i, f, g, o = jnp.split(z, 4, axis=1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    zeros = (jnp.zeros((batch, units)), jnp.zeros((batch, units)))

    def keras_form(kernel, recurrent, x, recompute=False, unroll=1):  # noqa: ANN001, ANN202
        def step(carry, x_t):  # noqa: ANN001, ANN202
            h, c = carry
            return gates(x_t @ kernel + h @ recurrent, c), None

        looped = jax.checkpoint(step) if recompute else step
        (h, _), _ = jax.lax.scan(looped, zeros, x, unroll=unroll)
        return jnp.sum(h * h)

    def hoisted(kernel, recurrent, x):  # noqa: ANN001, ANN202
        def step(carry, p_t):  # noqa: ANN001, ANN202
            h, c = carry
            return gates(p_t + h @ recurrent, c), None

        (h, _), _ = jax.lax.scan(step, zeros, jnp.einsum("tbe,eg->tbg", x, kernel))
        return jnp.sum(h * h)

    def gate_gradients(z, c_prev, d_h, d_c_next):  # noqa: ANN001, ANN202
        """One step backward from its gates' pre-activations ``z``: the gradient of ``z`` and
        of the previous cell state (the hand-written backward passes share it)."""
        i, f, g, o = jnp.split(z, 4, axis=1)
        si, sf, tg, so = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        tc = jnp.tanh(sf * c_prev + si * tg)
        d_c = d_c_next + d_h * so * (1 - tc * tc)
        d_z = jnp.concatenate(
            [
                d_c * tg * si * (1 - si),
                d_c * c_prev * sf * (1 - sf),
                d_c * si * (1 - tg * tg),
                d_h * tc * so * (1 - so),
            ],
            axis=1,
        )
        return d_z, d_c * sf

    @jax.custom_vjp
    def states(projected, recurrent):  # noqa: ANN001, ANN202
        return forward(projected, recurrent)[0]

    def forward(projected, recurrent):  # noqa: ANN001, ANN202
        def step(carry, p_t):  # noqa: ANN001, ANN202
            h, c = carry
            z = p_t + h @ recurrent
            h_next, c_next = gates(z, c)
            return (h_next, c_next), (h_next, c, z)

        _, (hs, c_before, zs) = jax.lax.scan(step, zeros, projected)
        return hs, (hs, c_before, zs, recurrent)

    def backward(saved, d_hs):  # noqa: ANN001, ANN202
        hs, c_before, zs, recurrent = saved

        def step(carry, inputs):  # noqa: ANN001, ANN202
            d_h_next, d_c_next = carry
            d_h_out, c_prev, z = inputs
            d_h = d_h_out + d_h_next
            d_z, d_c_prev = gate_gradients(z, c_prev, d_h, d_c_next)
            return (d_z @ recurrent.T, d_c_prev), d_z

        _, d_zs = jax.lax.scan(step, zeros, (d_hs, c_before, zs), reverse=True)
        h_before = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
        return d_zs, jnp.einsum("tbh,tbg->hg", h_before, d_zs)

    states.defvjp(forward, backward)

    def custom_backward(kernel, recurrent, x):  # noqa: ANN001, ANN202
        h = states(jnp.einsum("tbe,eg->tbg", x, kernel), recurrent)[-1]
        return jnp.sum(h * h)

    @jax.custom_vjp
    def last_state(kernel, recurrent, x):  # noqa: ANN001, ANN202
        return carries(kernel, recurrent, x)[0]

    def carries(kernel, recurrent, x):  # noqa: ANN001, ANN202
        def step(carry, x_t):  # noqa: ANN001, ANN202
            h, c = carry
            return gates(x_t @ kernel + h @ recurrent, c), carry

        (h, _), (hs, cs) = jax.lax.scan(step, zeros, x)
        return h, (kernel, recurrent, x, hs, cs)

    def recomputing_backward(saved, d_h_last):  # noqa: ANN001, ANN202
        kernel, recurrent, x, hs, cs = saved

        def step(carry, inputs):  # noqa: ANN001, ANN202
            d_h, d_c_next = carry
            x_t, h_prev, c_prev = inputs
            d_z, d_c_prev = gate_gradients(x_t @ kernel + h_prev @ recurrent, c_prev, d_h, d_c_next)
            return (d_z @ recurrent.T, d_c_prev), d_z

        start = (d_h_last, jnp.zeros_like(d_h_last))
        _, d_zs = jax.lax.scan(step, start, (x, hs, cs), reverse=True)
        return (
            jnp.einsum("tbe,tbg->eg", x, d_zs),
            jnp.einsum("tbh,tbg->hg", hs, d_zs),
            jnp.einsum("tbg,eg->tbe", d_zs, kernel),
        )

    last_state.defvjp(carries, recomputing_backward)

    def recomputed_backward(kernel, recurrent, x):  # noqa: ANN001, ANN202
        h = last_state(kernel, recurrent, x)
        return jnp.sum(h * h)

    key = jax.random.split(jax.random.PRNGKey(0), 3)
    args = (
        jax.random.normal(key[0], (features, 4 * units)) * 0.2,
        jax.random.normal(key[1], (units, 4 * units)) * 0.2,
        jax.random.normal(key[2], (steps, batch, features)),
    )
    losses = {
        "keras-form": keras_form,
        "recomputed": functools.partial(keras_form, recompute=True),
        "recomputed-unrolled": functools.partial(keras_form, recompute=True, unroll=4),
        "hoisted": hoisted,
        "custom-backward": custom_backward,
        "recomputed-backward": recomputed_backward,
    }
    # The input's gradient too: a model's embedding needs it.
    return {f: jax.jit(jax.grad(losses[f], argnums=(0, 1, 2))) for f in FORMS}, args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="60 time steps, 3 repeats")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.repeats = 60, 3

    import jax
    import numpy as np

    steps, args = build(a.batch, a.steps, a.features, a.units)
    reference = [np.asarray(g) for g in steps["keras-form"](*args)]
    difference = {}
    for form in FORMS:
        got = [np.asarray(g) for g in steps[form](*args)]  # also compiles it
        difference[form] = max(
            float(np.max(np.abs(g - r)) / np.max(np.abs(r)))
            for g, r in zip(got, reference, strict=True)
        )
        if difference[form] > 1e-4:
            print(f"{form}: gradients differ from keras-form by {difference[form]:.2e}")
            return 1
    seconds: dict[str, list[float]] = {form: [] for form in FORMS}
    for _ in range(a.repeats):
        for form in FORMS:  # alternating, so a busy moment hits every form alike
            started = time.perf_counter()
            jax.block_until_ready(steps[form](*args))
            seconds[form].append(time.perf_counter() - started)
    best = {form: min(s) for form, s in seconds.items()}
    headers = ["form", "ms per batch", "us per time step", "ms per example", "vs keras-form"]
    rows = [
        [
            form,
            round(best[form] * 1e3, 2),
            round(best[form] / a.steps * 1e6, 1),
            round(best[form] / a.batch * 1e3, 3),
            round(best[form] / best["keras-form"], 2),
        ]
        for form in FORMS
    ]
    print(
        f"LSTM-{a.units}, batch {a.batch}, {a.steps} steps, input {a.features}: "
        f"best of {a.repeats}, JAX {jax.__version__}"
    )
    print(table(headers, rows))
    path = write_result(
        "lstm_step-quick" if a.quick else "lstm_step",
        {
            "settings": vars(a),
            "jax": jax.__version__,
            "headers": headers,
            "table": rows,
            "seconds": seconds,
            "gradient_difference": difference,
        },
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
