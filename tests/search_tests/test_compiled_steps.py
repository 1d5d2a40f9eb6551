"""Compiled training steps on a bounded set of batch widths (issue 17).

Bucket widths: bounded in number, every sequence fits, nothing is cut but at maxlen; the count
of compilations a trial reports is the number of shapes it really trains on; a compiled model
predicts what the uncompiled one does (XLA in-process, JAX in a subprocess); a study runs under
``--backend jax`` with both engines and records its compilations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from search.cli import app
from search.data import load_source
from search.datasets.batching import (
    MAX_BUCKETS,
    LengthBatches,
    bucket_widths,
    fit_inputs,
    step_shapes,
    width_for,
)
from search.errors import UsageError
from storage import StudyDatabase

REPO = Path(__file__).resolve().parents[2]

TINY_SPACE = """
name = "tiny"
[dimensions]
cell = { choice = ["gru", "lstm"] }
units = { low = 4, high = 8 }
bidirectional = false
dropout = 0.0
learning_rate = { low = 1e-3, high = 1e-2, log = true }
vocab_size = 2000
maxlen = 40
embedding_dim = 8
batch_size = 32
"""

MODEL_CFG = {
    "cell": "gru",
    "units": 4,
    "bidirectional": False,
    "layers": 1,
    "head": "last",
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
    "embedding_dim": 8,
    "vocab_size": 2000,
    "learning_rate": 0.005,
    "optimizer": "adam",
    "batch_size": 32,
    "padding": "pre",
    "maxlen": 120,
    "epochs": 1,
}


@pytest.fixture(scope="module")
def imdb_lengths(imdb_npz: Path) -> np.ndarray:
    source = load_source(str(imdb_npz), limit=2000)
    return source.train.lengths


@pytest.mark.parametrize("maxlen", [16, 100, 200, 400, 2000])
def test_widths_are_few_hold_every_review_and_never_pass_maxlen(imdb_lengths, maxlen):
    clipped = np.minimum(imdb_lengths, maxlen)
    widths = bucket_widths(imdb_lengths, maxlen)
    assert 1 <= len(widths) <= MAX_BUCKETS
    assert list(widths) == sorted(set(widths))
    assert widths[-1] >= clipped.max()  # the longest (truncated) review fits
    assert widths[-1] <= maxlen  # no width pads beyond maxlen
    # a width below maxlen is a multiple of 8 (vector-friendly shapes)
    assert all(w % 8 == 0 for w in widths if w < maxlen)
    # each review goes to the smallest width that holds it
    for n in clipped[:200]:
        w = width_for(int(n), widths)
        assert w >= n and all(v < n for v in widths if v < w)


def test_widths_of_degenerate_length_sets():
    assert bucket_widths(np.array([7] * 50), 100) == (8,)
    assert bucket_widths(np.array([300, 500, 900]), 256) == (256,)  # all cut at maxlen
    assert bucket_widths(np.array([0, 0, 1]), 30) == (8,)  # empty rows still get a step
    assert bucket_widths(np.array([], dtype=int), 30) == (30,)
    assert len(bucket_widths(np.arange(1, 10_000), 10_000, max_buckets=3)) == 3


def _padded_steps(lengths: np.ndarray, widths: tuple[int, ...]) -> int:
    return sum(width_for(int(n), widths) for n in lengths)


def test_widths_pad_least_among_all_choices_of_as_many():
    """Brute force over every set of candidate widths (multiples of 8 below the longest row's
    rounded width, which is always in): none of as many widths pads the rows less than
    bucket_widths' choice, and where it chose fewer than allowed, one more width would have
    saved less than WIDTH_WORTH of the steps."""
    from itertools import combinations

    from search.datasets.batching import WIDTH_WORTH

    rng = np.random.default_rng(3)
    lengths = np.concatenate([rng.integers(1, 90, 300), rng.integers(150, 200, 50), [230] * 40])
    maxlen = 230
    candidates = list(range(8, maxlen, 8))

    def least(count: int) -> int:
        return min(
            _padded_steps(lengths, (*below, maxlen))
            for below in combinations(candidates, count - 1)
        )

    chosen_counts = set()
    for budget in (1, 2, 3, 4, 5):
        widths = bucket_widths(lengths, maxlen, max_buckets=budget)
        assert 1 <= len(widths) <= budget and widths[-1] == maxlen
        padded = _padded_steps(lengths, widths)
        assert padded == least(len(widths))
        if len(widths) < budget:
            assert least(len(widths) + 1) > padded * (1 - WIDTH_WORTH)
        chosen_counts.add(len(widths))
    assert len(chosen_counts) > 2  # the budget binds for a few, not only the 1% rule


@pytest.mark.parametrize("maxlen", [200, 500, 930])
def test_widths_pad_imdb_less_than_quantile_widths(imdb_lengths, maxlen):
    """The widths before (the length distribution's quantiles, as many rows per width) padded
    2,000 IMDB reviews 5.8%, 12.0% and 26.5% beyond their lengths at these maxlens; these pad
    5.4%, 10.1% and 16.5%, with no more widths."""
    clipped = np.minimum(imdb_lengths, maxlen)
    levels = np.linspace(0.0, 1.0, MAX_BUCKETS + 1)[1:]
    quantiles = np.quantile(clipped, levels, method="higher")
    before = tuple(sorted({min(maxlen, -(-int(q) // 8) * 8) for q in quantiles}))
    widths = bucket_widths(imdb_lengths, maxlen)
    assert len(widths) <= len(before)
    padding, padding_before = (_padded_steps(clipped, w) - clipped.sum() for w in (widths, before))
    assert padding < (0.95 if maxlen == 200 else 0.9) * padding_before


def _pre_padded(lengths: np.ndarray, maxlen: int) -> np.ndarray:
    x = np.zeros((len(lengths), maxlen), dtype=np.int32)
    for i, n in enumerate(np.minimum(lengths, maxlen)):
        if n:
            x[i, maxlen - n :] = np.arange(1, n + 1)
    return x


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_batches_keep_every_token_and_use_only_the_widths(imdb_lengths, padding):
    maxlen = 150
    lengths = np.minimum(imdb_lengths[:700], maxlen)
    x = _pre_padded(lengths, maxlen)
    if padding == "post":
        x = np.stack([np.roll(row, n) for row, n in zip(x, lengths, strict=True)])
    y = np.arange(len(lengths))  # the row index: which rows each batch holds
    widths = bucket_widths(lengths, maxlen)
    for seed in (None, 3):
        batches = LengthBatches(x, y, lengths, 64, padding, widths, seed)
        seen: list[int] = []
        for xb, yb in batches.epoch():
            assert xb.shape[1] in widths
            if seed is not None:
                assert xb.shape[0] == 64  # full training batches: one batch dimension
            # no token of any row was cut away: every row keeps all its (truncated) tokens
            assert (np.count_nonzero(xb, axis=1) == lengths[yb]).all()
            seen.extend(yb.tolist())
        assert set(seen) == set(range(len(lengths)))  # every row, every epoch
        if seed is None:
            assert len(seen) == len(lengths)  # validation: each row exactly once


def test_training_order_changes_between_epochs_and_follows_the_seed(imdb_lengths):
    lengths = np.minimum(imdb_lengths[:500], 100)
    x, y = _pre_padded(lengths, 100), np.arange(500)

    def two_epochs(seed: int) -> list[list[int]]:
        b = LengthBatches(x, y, lengths, 50, "pre", bucket_widths(lengths, 100), seed)
        return [[int(v) for _, yb in b.epoch() for v in yb] for _ in range(2)]

    first, second = two_epochs(5)
    assert first != second
    assert two_epochs(5) == [first, second]


def test_counted_compilations_are_the_shapes_a_trial_trains_on(imdb_npz):
    source = load_source(str(imdb_npz), limit=900, options={"bucketing": True})
    prepared = source.prepare(MODEL_CFG)
    inputs = fit_inputs(prepared, 32)
    shapes = set()
    for data in (inputs["x"], inputs["validation_data"]):
        shapes |= {("t" if data is inputs["x"] else "v", tuple(xb.shape)) for xb, _ in data}
    assert step_shapes(prepared, 32) == len(shapes)
    widths = bucket_widths(np.concatenate([prepared.len_train, prepared.len_val]), 120)
    # at most one shape per width for training (full batches), one more for validation's tail
    assert len(shapes) <= 2 * len(widths) + 1


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # every other path of the model builder: the Jordan cell, post-padding (masked),
        # both directions, recurrent dropout, a pooling head
        {
            "cell": "jordan",
            "padding": "post",
            "bidirectional": True,
            "recurrent_dropout": 0.1,
            "dropout": 0.1,
            "head": "average",
        },
        {"cell": "lstm", "head": "max", "optimizer": "rmsprop"},
    ],
    ids=["gru", "jordan-post-bi-dropout", "lstm-max"],
)
def test_xla_compiled_model_predicts_as_the_uncompiled_one(imdb_npz, overrides):
    import keras

    from search.model import build_model

    cfg = {**MODEL_CFG, **overrides}
    source = load_source(str(imdb_npz), limit=400, options={"bucketing": True})
    prepared = source.prepare(cfg)
    keras.utils.set_random_seed(1)
    plain = build_model(cfg, prepared.spec, jit_compile=False)
    compiled = build_model(cfg, prepared.spec, jit_compile=True)
    compiled.set_weights(plain.get_weights())
    assert compiled.jit_compile and not plain.jit_compile
    widths = bucket_widths(prepared.len_val, 120)
    batches = LengthBatches(
        prepared.x_val, prepared.y_val, prepared.len_val, 32, cfg["padding"], widths
    )
    for i in range(len(batches)):
        xb, _ = batches.batch(i)
        a = plain.predict_on_batch(xb)
        b = compiled.predict_on_batch(xb)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # and one step of training moves both the same way (dropout draws differ: no comparison)
    xb, yb = batches.batch(0)
    la = plain.train_on_batch(xb, yb)
    lb = compiled.train_on_batch(xb, yb)
    if not cfg["dropout"] and not cfg["recurrent_dropout"]:
        np.testing.assert_allclose(la, lb, rtol=1e-4, atol=1e-5)
        for wa, wb in zip(plain.get_weights(), compiled.get_weights(), strict=True):
            np.testing.assert_allclose(wa, wb, rtol=1e-3, atol=1e-5)


JAX_CHILD = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    from search.data import load_source
    from search.datasets.batching import LengthBatches, bucket_widths
    from search.model import build_model
    cfg = json.loads(sys.argv[2])
    source = load_source(sys.argv[1], limit=300, options={"bucketing": True})
    prepared = source.prepare(cfg)
    keras.utils.set_random_seed(1)
    model = build_model(cfg, prepared.spec)
    widths = bucket_widths(prepared.len_val, cfg["maxlen"])
    b = LengthBatches(prepared.x_val, prepared.y_val, prepared.len_val, 32, "pre", widths)
    xs = [b.batch(i)[0] for i in range(len(b))]
    compiled = [model.predict_on_batch(x) for x in xs]
    model.jit_compile = False
    model.predict_function = None
    eager = [model.predict_on_batch(x) for x in xs]
    print(json.dumps({"backend": keras.backend.backend(),
                      "diff": max(float(np.abs(a - e).max()) for a, e in zip(compiled, eager))}))
    """
)


def _env(backend: str) -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}


def _jax_child(code: str, *args: str, timeout: int = 300) -> Any:
    """Run ``code`` under Keras' JAX backend in a fresh process; its last stdout line as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=_env("jax"),
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_jax_compiled_model_predicts_as_the_uncompiled_one(imdb_npz):
    pytest.importorskip("jax")
    got = _jax_child(JAX_CHILD, str(imdb_npz), json.dumps(MODEL_CFG))
    assert got["backend"] == "jax"
    assert got["diff"] < 1e-5


def test_a_trial_records_its_backend_and_compilations(tmp_path, imdb_npz):
    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 's.db'}"
    common = ["--space", str(space), "--data", str(imdb_npz), "--limit", "300"]
    common += ["--max-epochs", "1", "--seed", "2", "--storage", url, "--quiet"]
    result = CliRunner().invoke(app, ["run", "--study", "xla", "--jit", "--trials", "1", *common])
    assert result.exit_code == 0, result.output
    # by default TensorFlow's graphs are not compiled
    result = CliRunner().invoke(app, ["run", "--study", "auto", "--trials", "1", *common])
    assert result.exit_code == 0, result.output
    db = StudyDatabase(url, create=False)
    [xla] = [t for t in db.trials("xla") if t.state == "complete"]
    [auto] = [t for t in db.trials("auto") if t.state == "complete"]
    assert xla.extra["backend"] == "tensorflow" and xla.extra["jit_compile"] is True
    source = load_source(str(imdb_npz), limit=300, options={"bucketing": True})
    prepared = source.prepare({**MODEL_CFG, **xla.config})
    assert xla.extra["compilations"] == step_shapes(prepared, 32) > 0
    assert auto.extra["jit_compile"] is False and auto.extra["compilations"] is None
    # recomputing the recurrent steps is a JAX-on-CPU lever only
    assert xla.extra["recomputed_steps"] is False and auto.extra["recomputed_steps"] is False
    assert db.study_config("xla").options["jit_compile"] is True
    assert db.study_config("auto").options["jit_compile"] is None
    assert db.study_config("xla").options["backend"] == "tensorflow"


def test_asking_for_another_backend_in_a_process_running_keras_is_one_line(tmp_path, imdb_npz):
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--study",
            "b",
            "--data",
            str(imdb_npz),
            "--limit",
            "200",
            "--backend",
            other,
            "--storage",
            url,
            "--quiet",
        ],
    )
    assert result.exit_code == 2
    assert f"--backend {other}: Keras is already loaded with the" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()  # a refused run creates nothing


def test_the_backend_default_follows_the_loaded_keras_then_the_environment(monkeypatch):
    import search.backend as backend

    assert backend.default_backend("jax") == backend.loaded_backend()  # Keras is loaded here
    monkeypatch.setattr(backend, "loaded_backend", lambda: None)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backend.default_backend("tensorflow") == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    assert backend.default_backend("jax") == ("jax" if backend.available("jax") else "tensorflow")
    assert backend.default_backend(None) == backend.PREFERRED_BACKEND
    with pytest.raises(UsageError, match="--backend theano: expected one of jax, tensorflow"):
        backend.check_backend("theano")


@pytest.mark.slow
def test_both_engines_run_under_jax(tmp_path, imdb_npz):
    pytest.importorskip("jax")
    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 's.db'}"
    common = ["--space", str(space), "--data", str(imdb_npz), "--limit", "200", "--seed", "4"]
    common += ["--storage", url, "--quiet", "--format", "json", "--backend", "jax"]
    runs = [
        ["run", "--study", "o", "--trials", "2", "--max-epochs", "1", *common],
        [
            "run",
            "--study",
            "h",
            "--engine",
            "hyperband",
            "--trials",
            "2",
            "--max-epochs",
            "2",
            "--factor",
            "2",
            *common,
        ],
    ]
    for args in runs:
        out = subprocess.run(
            [sys.executable, "-m", "search", *args],
            capture_output=True,
            text=True,
            env={**_env("jax"), "KERAS_BACKEND": ""},  # --backend alone chooses
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout)["finished"] >= 2
    db = StudyDatabase(url, create=False)
    for study in ("o", "h"):
        done = [t for t in db.trials(study) if t.state == "complete"]
        assert done, study
        for t in done:
            assert t.extra["backend"] == "jax" and t.extra["jit_compile"] is True
            assert t.extra["compilations"] > 0 and t.extra["compile_seconds"] > 0
        assert db.study_config(study).options["backend"] == "jax"


def test_workers_sharing_few_cores_keep_jax_to_one_thread():
    from search.workers import worker_environment

    one = worker_environment(1, 0)
    assert "--xla_cpu_multi_thread_eigen=false" in one["XLA_FLAGS"]
    assert one["TF_NUM_INTRAOP_THREADS"] == "1"
    assert "XLA_FLAGS" not in worker_environment(4, 0)


#: `rnnsearch` with the arguments given, then whether the process ever imported TensorFlow.
LOADED_TF_CHILD = textwrap.dedent(
    """
    import sys
    from search.cli import main
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
    print("tensorflow loaded:", "tensorflow" in sys.modules)
    """
)


def test_a_jax_search_on_token_data_never_loads_tensorflow(tmp_path, imdb_npz):
    """Keras imports TensorFlow whenever it is installed (to seed it, to check for its types
    when saving); under JAX nothing of an Optuna trial on token data uses it, and its import
    cost 4-5 s of every run's start. TensorFlow stays unloaded, and its C++ start-up lines
    stay off the terminal."""
    pytest.importorskip("jax")
    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 's.db'}"
    out = subprocess.run(
        [sys.executable, "-c", LOADED_TF_CHILD, "run", "--study", "j", "--space", str(space),
         "--data", str(imdb_npz), "--limit", "200", "--seed", "4", "--storage", url,
         "--trials", "1", "--max-epochs", "2", "--quiet", "--backend", "jax"],
        capture_output=True, text=True, env={**_env("jax"), "KERAS_BACKEND": ""}, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tensorflow loaded: False" in out.stdout, out.stdout[-2000:]
    assert "oneDNN" not in out.stderr and "cuda" not in out.stderr.lower(), out.stderr[-2000:]
    [trial] = StudyDatabase(url, create=False).trials("j")
    # The seed was set (reproducible trials) and the model saved (its checkpoint each epoch).
    assert trial.state == "complete" and trial.epochs == 2 and trial.extra["backend"] == "jax"
    assert trial.extra["recomputed_steps"] is True


def test_a_process_that_loaded_keras_itself_keeps_keras_as_it_was():
    """A notebook or the user's code imported Keras (under JAX) before rnnsearch: rnnsearch
    does not hide TensorFlow from that Keras; in a process of its own it does."""
    pytest.importorskip("jax")
    child = (
        "import sys\n"
        "if sys.argv[1] == 'user-first':\n"
        "    import keras\n"
        "from search import tfenv\n"
        "tfenv.quiet_import()\n"
        "from keras.src.utils import module_utils\n"
        "print(module_utils.tensorflow._available)\n"
    )
    seen = {}
    for case in ("user-first", "rnnsearch-first"):
        out = subprocess.run(
            [sys.executable, "-c", child, case], capture_output=True, text=True,
            env=_env("jax"), timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        seen[case] = out.stdout.strip()
    assert seen == {"user-first": "None", "rnnsearch-first": "False"}, seen


RECOMPUTE_CHILD = textwrap.dedent(
    """
    import contextlib, json, sys
    import jax, keras, numpy as np
    from search.data import load_source
    from search.model import build_model
    import search.train
    from search.train import recomputed_recurrent_steps
    import keras.src.backend as namespace
    source = load_source(sys.argv[1], limit=300, options={"bucketing": True})
    loop, gru = namespace.rnn, namespace.gru
    results = []
    for cfg, least in json.loads(sys.argv[2]):
        search.train.RECOMPUTE_MIN_ELEMENTS = least
        prepared = source.prepare(cfg)
        x, y = prepared.x_train[:96], prepared.y_train[:96]
        trained, traced = [], []
        for recompute in (False, True):
            keras.utils.set_random_seed(3)
            model = build_model(cfg, prepared.spec)
            with recomputed_recurrent_steps() if recompute else contextlib.nullcontext():
                swapped = namespace.rnn is not loop
                model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
                # one recurrent layer as JAX traces it for training: each step inside a remat
                layer = next(l for l in model.layers if l.name.startswith((cfg["cell"], "bi_")))
                values = [v.value for v in layer.trainable_variables]
                inputs = np.ones((2, 7, cfg["embedding_dim"]), "float32")
                def loss(values):
                    fixed = [v.value for v in layer.non_trainable_variables]
                    out, _ = layer.stateless_call(values, fixed, inputs, training=True)
                    return out.sum()
                jaxpr = str(jax.make_jaxpr(loss)(values))
            trained.append([w.tolist() for w in model.get_weights()])
            traced.append({"swapped": swapped,
                           "checkpoint": "checkpoint" in jaxpr or "remat" in jaxpr})
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(trained[0], trained[1]))
        restored = namespace.rnn is loop and namespace.gru is gru
        results.append({"diff": diff, "traced": traced, "restored": restored})
    print(json.dumps(results))
    """
)

RECOMPUTE_CASES = {
    "lstm-dropout": ({"cell": "lstm", "dropout": 0.2, "recurrent_dropout": 0.1}, 0),
    "bigru-max": ({"cell": "gru", "bidirectional": True, "head": "max", "dropout": 0.3}, 0),
    "simple-2-layers": ({"cell": "simple", "layers": 2}, 0),
    "jordan-masked": ({"cell": "jordan", "padding": "post"}, 0),
    "small-gru-default": ({"cell": "gru"}, None),
}


@pytest.mark.slow
def test_recomputed_recurrent_steps_train_the_same_weights(imdb_npz):
    """Under JAX on a CPU each recurrent step of a large enough batch is recomputed in the
    backward pass instead of stored (faster: bench/compiled_steps.py). The same seed trains the
    same weights with it as without it, for every cell, both directions, dropout and masks
    (the size rule set to 0 here, so that small models exercise it); the step is really inside
    a remat while on, and Keras is as it was afterwards. A batch below the default size rule
    (32 rows of at most 60 steps, 6 units) stores its steps, through Keras' own GRU loop. One
    subprocess for every case (JAX's start-up once)."""
    pytest.importorskip("jax")
    from search.train import RECOMPUTE_MIN_ELEMENTS

    cases = [
        ({**MODEL_CFG, "units": 6, "maxlen": 60, **overrides}, least)
        for overrides, least in RECOMPUTE_CASES.values()
    ]
    cases = [(cfg, RECOMPUTE_MIN_ELEMENTS if least is None else least) for cfg, least in cases]
    results = _jax_child(RECOMPUTE_CHILD, str(imdb_npz), json.dumps(cases), timeout=600)
    for name, (_, least), got in zip(RECOMPUTE_CASES, cases, results, strict=True):
        assert got["traced"] == [
            {"swapped": False, "checkpoint": False},
            {"swapped": True, "checkpoint": least == 0},
        ], name
        assert got["restored"] is True, name
        assert got["diff"] < 1e-5, (name, got["diff"])


@pytest.mark.parametrize(
    ("steps", "states", "recomputed"),
    [
        (100, [(64, 64), (64, 64)], True),  # LSTM-64: h and c, 819,200 elements
        (500, [(64, 64), (64, 64)], True),
        (200, [(64, 32)], False),  # GRU-32 at 200 steps: 409,600
        (100, [(64, 32)], False),
        (100, [(64, 128)], True),  # GRU-128
    ],
)
def test_recomputing_pays_for_long_sequences_with_large_states(steps, states, recomputed):
    from search.train import _recomputing_pays

    inputs = np.zeros((64, steps, 8), "float32")
    held = [np.zeros(s, "float32") for s in states]
    assert _recomputing_pays(inputs, held, time_major=False) is recomputed
    time_major = np.zeros((steps, 64, 8), "float32")
    assert _recomputing_pays(time_major, held, time_major=True) is recomputed
