"""What else makes one LSTM-64 trial faster on a CPU under JAX: each lever against Keras' default.

    python bench/cpu_levers.py                 # LSTM-64 at maxlen 500, 4,000 sequences, 3 epochs
    python bench/cpu_levers.py --quick         # 1,000 sequences, maxlen 100, 2 epochs
    python bench/cpu_levers.py --levers default hoisted two-processes

One model (Embedding 32 over a vocabulary of 10,000, a Keras LSTM, a sigmoid output; Adam 1e-3,
batch 64), fixed-length random token sequences (the time is the same for any tokens), jax.jit
steps as rnnsearch compiles them; every lever in its own fresh process, one after the other, so
each sees the machine alone. Reported: seconds per epoch after the first (the first holds the
compilations) and the ratio to ``default``. Levers (issue 17 asks to measure these):

- ``default``: Keras' LSTM, XLA's default threading (both cores).
- ``hoisted``: the input projection of all time steps in one matrix product before the loop,
  the loop multiplying only the state by the recurrent kernel (what cuDNN does on a GPU).
- ``unroll4``, ``unroll16``: the loop over time steps unrolled 4 or 16 steps per iteration
  (``jax.lax.scan(unroll=...)``).
- ``one-thread``: XLA's Eigen thread pool off (``--xla_cpu_multi_thread_eigen=false``).
- ``xnn-dot``, ``ynn-dot``: XLA's XNNPACK / YNNPACK libraries for the matrix products.
- ``data-parallel``: two host devices (``--xla_force_host_platform_device_count=2``), each batch
  split over them (``keras.distribution.DataParallel``).
- ``one-core``: one process pinned to one core (``taskset``).
- ``two-processes``: two such processes at once, one per core, each on its own copy of the
  work: what ``rnnsearch run --workers 2`` does with two trials. Its ratio is the *throughput*
  ratio (two epochs done in the time shown, against one epoch of ``default``).
- ``two-processes-unpinned``: the same, left to the scheduler (no ``taskset``).
- ``steps-per-execution``: ``model.compile(steps_per_execution=8)``.
- ``validate``: the default plus a validation pass over a quarter as many sequences each epoch
  (4,000 and 1,000, as bench/compiled_steps.py trains and validates): what validating every
  epoch costs.
- ``xla-o1``, ``xla-o0``: XLA's backend optimisation level 1 or 0 instead of 2 (LLVM's
  optimisation of the generated code: cheaper compilations, perhaps slower steps; the first
  epoch's excess over the later ones is the compilations' cost).
- ``pipeline``: the default fed by rnnsearch's by-length batches (``keras.utils.PyDataset``
  over random lengths, every batch padded to one of 8 widths) instead of arrays; its epochs
  are shorter (less padding), so the JSON also holds the seconds to produce one epoch's batches
  without training: the data pipeline's cost per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, table, write_result  # noqa: E402

LEVERS = (
    "default",
    "hoisted",
    "unroll4",
    "unroll16",
    "one-thread",
    "xnn-dot",
    "ynn-dot",
    "data-parallel",
    "one-core",
    "two-processes",
    "two-processes-unpinned",
    "steps-per-execution",
    "validate",
    "pipeline",
    "xla-o1",
    "xla-o0",
)

CHILD = r"""
import json, os, sys, time
lever, n, maxlen, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import numpy as np, keras
from keras import ops
if lever.startswith("unroll"):
    import jax, types
    import keras.src.backend.jax.rnn as jax_rnn
    scan, steps = jax.lax.scan, int(lever.removeprefix("unroll"))
    jax_rnn.lax = types.SimpleNamespace(scan=lambda *a, **k: scan(*a, unroll=steps, **k))

class HoistedLSTM(keras.layers.LSTM):
    # x @ kernel for every step at once; the loop only does h @ recurrent_kernel
    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        projected = ops.matmul(sequences, cell.kernel) + cell.bias
        def step(z_x, states):
            h, c = states
            z = z_x + ops.matmul(h, cell.recurrent_kernel)
            c, o = cell._compute_carry_and_output_fused(ops.split(z, 4, axis=1), c)
            h = o * cell.activation(c)
            return h, [h, c]
        return keras.src.backend.rnn(step, projected, list(initial_state), mask=mask,
                                     input_length=sequences.shape[1],
                                     return_all_outputs=self.return_sequences)

rng = np.random.default_rng(0)
x = rng.integers(1, 10000, size=(n, maxlen)).astype("int32")
y = rng.integers(0, 2, size=(n,)).astype("float32")
keras.utils.set_random_seed(0)
if lever == "data-parallel":
    import jax
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
lstm = (HoistedLSTM if lever == "hoisted" else keras.layers.LSTM)(64)
model = keras.Sequential([keras.Input((maxlen,), dtype="int32"), keras.layers.Embedding(10000, 32),
                          lstm, keras.layers.Dense(1, activation="sigmoid")])
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"],
              steps_per_execution=8 if lever == "steps-per-execution" else 1)
seconds = []
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): seconds.append(time.perf_counter() - self.t)
fit = {"x": x, "y": y, "batch_size": 64}
produce = None
if lever == "validate":
    vx = rng.integers(1, 10000, size=(n // 4, maxlen)).astype("int32")
    fit["validation_data"] = (vx, rng.integers(0, 2, size=(n // 4,)).astype("float32"))
if lever == "pipeline":
    from search.datasets.batching import length_batches_dataset
    lengths = rng.integers(1, maxlen + 1, size=n)
    fit = {"x": length_batches_dataset(x, y, lengths, 64, "pre", seed=0)}
    started = time.perf_counter()
    for i in range(len(fit["x"])):
        fit["x"][i]
    produce = time.perf_counter() - started
model.fit(**fit, epochs=epochs, verbose=0, callbacks=[Timer()])
print(json.dumps({"seconds": seconds, "produce_epoch_seconds": produce}))
"""

FLAGS = {
    "one-thread": "--xla_cpu_multi_thread_eigen=false",
    "xnn-dot": "--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
    "ynn-dot": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
    "data-parallel": "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false",
    "one-core": "--xla_cpu_multi_thread_eigen=false",
    "two-processes": "--xla_cpu_multi_thread_eigen=false",
    "two-processes-unpinned": "--xla_cpu_multi_thread_eigen=false",
    "xla-o1": "--xla_backend_optimization_level=1",
    "xla-o0": "--xla_backend_optimization_level=0",
}


def start(lever: str, n: int, maxlen: int, epochs: int, core: int | None) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = str(REPO)
    if lever in FLAGS:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FLAGS[lever]}".strip()
    command = [sys.executable, "-c", CHILD, lever, str(n), str(maxlen), str(epochs)]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def collect(proc: subprocess.Popen, lever: str) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{lever} failed:\n{err.decode()[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--levers", nargs="+", choices=LEVERS, default=list(LEVERS))
    args = parser.parse_args()
    n, maxlen, epochs = (1000, 100, 2) if args.quick else (4000, 500, 3)
    cores = len(os.sched_getaffinity(0))
    levers = ["default", *[lever for lever in args.levers if lever != "default"]]
    runs: dict[str, list[list[float]]] = {}
    produce: dict[str, float] = {}
    for lever in levers:
        if lever in ("one-core", "two-processes", "two-processes-unpinned") and cores < 2:
            print(f"{lever}: skipped (needs two cores, this machine has {cores})")
            continue
        pinned = lever in ("one-core", "two-processes")
        procs = [start(lever, n, maxlen, epochs, core=0 if pinned else None)]
        if lever.startswith("two-processes"):
            procs.append(start(lever, n, maxlen, epochs, core=1 if pinned else None))
        results = [collect(p, lever) for p in procs]
        runs[lever] = [r["seconds"] for r in results]
        if results[0].get("produce_epoch_seconds") is not None:
            produce[lever] = results[0]["produce_epoch_seconds"]
        print(f"{lever}: s/epoch {[[round(s, 2) for s in r] for r in runs[lever]]}", flush=True)
    steady = {
        lever: statistics.mean(s for r in rs for s in (r[1:] or r)) for lever, rs in runs.items()
    }
    rows = []
    for lever, rs in runs.items():
        # two processes finish len(rs) epochs in the time of one of theirs
        throughput = len(rs) / steady[lever]
        rows.append(
            [
                lever,
                round(steady[lever], 2),
                round(steady[lever] / steady["default"], 2),
                round(throughput * steady["default"], 2),
                # the first epoch holds the compilations
                round(statistics.mean(r[0] for r in rs) - steady[lever], 2),
            ]
        )
    headers = [
        "lever",
        "s_per_epoch",
        "time_ratio",
        "epochs_per_time_of_default_epoch",
        "first_epoch_excess_s",
    ]
    print(table(headers, rows))
    for lever, seconds in produce.items():
        print(f"{lever}: one epoch's batches produced in {seconds:.3f} s without training")
    path = write_result(
        "cpu_levers-quick" if args.quick else "cpu_levers",
        {
            "settings": {"sequences": n, "maxlen": maxlen, "epochs": epochs, "cores": cores},
            "runs": runs,
            "produce_epoch_seconds": produce,
            "headers": headers,
            "table": rows,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
