"""No data file ever runs code: user .npz files are read through an allow-list unpickler.

Crafted files that would run ``touch SENTINEL`` if unpickled (a raw pickle named .npz, an object
array member inside a real .npz), a pickle naming a missing module, random bytes and the like
give one line and exit code 2, and the sentinel never appears. Keras' own imdb.npz still loads
to identical arrays; the pickle-free ragged layout (values plus lengths) reads and trains like
the object-array layout. Data-cache entries follow the process umask.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import search.data as data
from search.cli import app
from search.datasets import cache, imdb, readers, safe_npz
from search.errors import DataError

RNNSEARCH = str(Path(sys.executable).with_name("rnnsearch"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RNNSEARCH_CACHE", str(root))
    monkeypatch.setattr(data, "_SOURCES", {})
    return root


class RunsCode:
    """Unpickling this runs a shell command (``os.system`` pickles as ``posix.system``)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def objects(*items: object) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def npz_member(path: Path, name: str, pickle_bytes: bytes, shape: tuple = (1,)) -> Path:
    """An .npz whose member ``name`` is an object-array header followed by ``pickle_bytes``."""
    with zipfile.ZipFile(path, "w") as z, z.open(f"{name}.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": shape}
        )
        fh.write(pickle_bytes)
    return path


def raw_pickle(tmp: Path, sentinel: Path) -> Path:
    path = tmp / "x.npz"
    path.write_bytes(pickle.dumps(RunsCode(sentinel)))
    return path


def object_member(tmp: Path, sentinel: Path) -> Path:
    path = tmp / "evil.npz"
    xs = objects(*[[1, 2, 3]] * 19, RunsCode(sentinel))
    np.savez(path, x_train=xs, y_train=np.arange(20) % 2)
    return path


def missing_module(tmp: Path, sentinel: Path) -> Path:
    # GLOBAL 'no_such_module_rnnsearch.build', (), REDUCE: what a pickle of a class from a
    # module the reader lacks looks like
    body = b"\x80\x02cno_such_module_rnnsearch\nbuild\n)R."
    return npz_member(tmp / "missing.npz", "x_train", body)


def random_bytes(tmp: Path, sentinel: Path) -> Path:
    path = tmp / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def truncated_zip(tmp: Path, sentinel: Path) -> Path:
    whole = tmp / "whole.npz"
    np.savez(whole, x_train=np.ones((20, 3, 2)), y_train=np.arange(20) % 2)
    path = tmp / "truncated.npz"
    path.write_bytes(whole.read_bytes()[:300])
    return path


def top_level_dict(tmp: Path, sentinel: Path) -> Path:
    return npz_member(tmp / "dict.npz", "x_train", pickle.dumps({"a": [1, 2]}, protocol=3))


def strings_inside(tmp: Path, sentinel: Path) -> Path:
    path = tmp / "strings.npz"
    np.savez(path, x_train=objects(*[["a", "b"]] * 20), y_train=np.arange(20) % 2)
    return path


def single_npy(tmp: Path, sentinel: Path) -> Path:
    path = tmp / "single.npz"
    with path.open("wb") as fh:
        np.save(fh, np.arange(3))
    return path


BAD_FILES: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("raw pickle named .npz", raw_pickle, "looks like a Python pickle, which is never loaded"),
    (
        "code in an object array",
        object_member,
        "refuses to load global 'posix.system': only arrays of numbers and lists of numbers",
    ),
    ("missing module", missing_module, "refuses to load global 'no_such_module_rnnsearch.build'"),
    ("random bytes", random_bytes, "not a numpy file (unknown content); expected an .npz"),
    ("truncated zip", truncated_zip, "damaged or truncated zip file"),
    ("a dict, not an array", top_level_dict, "array 'x_train' unpickles to a dict, not an array"),
    ("strings in lists", strings_inside, "x_train[0][0] is a str; only arrays of numbers"),
    ("a single .npy", single_npy, "it is a single .npy array"),
]
IDS = [c[0] for c in BAD_FILES]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in BAD_FILES], ids=IDS)
def test_bad_npz_is_refused_with_a_data_error_and_runs_nothing(tmp_path, make, message):
    sentinel = tmp_path / "SENTINEL"
    path = make(tmp_path, sentinel)
    with pytest.raises(DataError) as err:
        safe_npz.load_npz(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    # every reader of user data goes through it, also when resume/retrain reopen a stored path
    for read in (readers.numeric_npz_kind, readers.read_numeric_npz, imdb.read_imdb_npz):
        with pytest.raises(DataError):
            read(path)
    with pytest.raises(DataError):
        data.source_from_description({"source": str(path), "limit": 50})
    assert not sentinel.exists()


@pytest.mark.parametrize("make", [raw_pickle, object_member], ids=["raw pickle", "object array"])
def test_the_crafted_files_really_run_code_when_unpickled(tmp_path, make):
    """The control: the files above are real exploits (so the refusal is what keeps us safe)."""
    sentinel = tmp_path / "SENTINEL"
    path = make(tmp_path, sentinel)
    if make is raw_pickle:
        pickle.loads(path.read_bytes())
    else:
        with np.load(path, allow_pickle=True) as f:
            f["x_train"]
    assert sentinel.exists()


def run_cli(tmp: Path, path: Path) -> object:
    return CliRunner().invoke(
        app,
        [
            "run",
            "--study",
            "s",
            "--data",
            str(path),
            "--limit",
            "50",
            "--trials",
            "1",
            "--quiet",
            "--storage",
            f"sqlite:///{tmp / 's.db'}",
        ],
    )


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in BAD_FILES], ids=IDS)
def test_cli_gives_one_line_and_exit_2(tmp_path, make, message):
    sentinel = tmp_path / "SENTINEL"
    path = make(tmp_path, sentinel)
    result = run_cli(tmp_path, path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rnnsearch: error: ") and str(path) in lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not sentinel.exists()


def test_cli_process_refuses_the_exploit_before_it_runs(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    path = object_member(tmp_path, sentinel)
    out = subprocess.run(
        [RNNSEARCH, "run", "--study", "s", "--data", str(path), "--limit", "50", "--trials", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if k != "RNNSEARCH_STORAGE"},
            "PYTHONPATH": str(REPO),
            "RNNSEARCH_CACHE": str(tmp_path / "c"),
        },
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnsearch: error: "), out.stderr
    assert str(path) in lines[0] and "refuses to load global 'posix.system'" in lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert not sentinel.exists()


def test_refused_data_leaves_no_study_database(tmp_path):
    path = object_member(tmp_path, tmp_path / "SENTINEL")
    result = run_cli(tmp_path, path)
    assert result.exit_code == 2
    assert not (tmp_path / "s.db").exists()


def test_keras_imdb_npz_loads_to_identical_arrays(imdb_npz: Path):
    safe = safe_npz.load_npz(imdb_npz)
    # the trusted reference: this known file, with pickles on, as Keras reads it
    with np.load(imdb_npz, allow_pickle=True) as f:
        trusted = {k: f[k] for k in f.files}
    assert sorted(safe) == sorted(trusted) == ["x_test", "x_train", "y_test", "y_train"]
    for name, ref in trusted.items():
        got = safe[name]
        assert type(got) is np.ndarray and got.dtype == ref.dtype and got.shape == ref.shape
        if ref.dtype == object:
            assert all(type(a) is list and a == b for a, b in zip(got, ref, strict=True)), name
        else:
            np.testing.assert_array_equal(got, ref)

    # and the IMDB reader (moved to search.datasets.imdb) still reads it as Keras does:
    # shuffle with RandomState(113), start_char 1, index_from 3
    (tokens, offsets, labels), (t_tokens, t_offsets, t_labels) = imdb.read_imdb_npz(imdb_npz)
    rng = np.random.RandomState(113)
    train_idx = np.arange(len(trusted["x_train"]))
    rng.shuffle(train_idx)
    test_idx = np.arange(len(trusted["x_test"]))
    rng.shuffle(test_idx)
    for idx, xs, ys, tok, off, lab in (
        (train_idx, trusted["x_train"], trusted["y_train"], tokens, offsets, labels),
        (test_idx, trusted["x_test"], trusted["y_test"], t_tokens, t_offsets, t_labels),
    ):
        np.testing.assert_array_equal(lab, ys[idx])
        for row in np.random.default_rng(0).choice(len(idx), size=200, replace=False):
            expected = [1] + [w + 3 for w in xs[idx[row]]]
            assert tok[off[row] : off[row + 1]].tolist() == expected


@pytest.mark.parametrize("protocol", range(6))
def test_object_arrays_of_every_pickle_protocol_and_numpy_1_names_load(tmp_path, protocol):
    xs = objects([1, 2, 3], [np.int64(4), 5.5], np.arange(6.0).reshape(3, 2))
    body = pickle.dumps(xs, protocol=protocol)
    if protocol < 4:  # as numpy 1.x writes them: numpy.core, not numpy._core
        body = body.replace(b"numpy._core.", b"numpy.core.")
        assert b"numpy.core.multiarray" in body
    got = safe_npz.load_npz(npz_member(tmp_path / "p.npz", "x", body, shape=(3,)))["x"]
    assert got[0] == [1, 2, 3] and got[1] == [4, 5.5]
    np.testing.assert_array_equal(got[2], np.arange(6.0).reshape(3, 2))


def ragged_sequences(n: int = 90, features: int = 2, seed: int = 4) -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(int(rng.integers(1, 12)), features)) for _ in range(n)]
    for i, s in enumerate(seqs):
        s[:, i % 3 % features] += 1.5  # learnable: the class shifts one feature
    return seqs, np.arange(n) % 3


def write_ragged(path: Path, seqs: list, labels: np.ndarray, cut: int) -> Path:
    """The documented pickle-free layout (README, Your own data)."""
    train, test = seqs[:cut], seqs[cut:]
    np.savez(
        path,
        x_train_values=np.concatenate(train),
        x_train_lengths=np.array([len(s) for s in train]),
        y_train=labels[:cut],
        x_test_values=np.concatenate(test),
        x_test_lengths=np.array([len(s) for s in test]),
        y_test=labels[cut:],
    )
    return path


def test_ragged_layout_reads_like_the_object_array_layout(tmp_path):
    seqs, labels = ragged_sequences()
    objects_path = tmp_path / "objects.npz"
    np.savez(
        objects_path,
        x_train=objects(*seqs[:70]),
        y_train=labels[:70],
        x_test=objects(*seqs[70:]),
        y_test=labels[70:],
    )
    ragged_path = write_ragged(tmp_path / "ragged.npz", seqs, labels, 70)
    with np.load(ragged_path, allow_pickle=False) as f:  # no pickle in the new layout
        assert all(f[k].dtype != object for k in f.files)
    a = data.load_source(str(objects_path))
    b = data.load_source(str(ragged_path))
    assert a.description["format"] == b.description["format"] == "numeric-npz"
    assert b.features == 2 and len(b.train) == 70 and len(b.test) == 20
    for split in ("train", "test"):
        sa, sb = getattr(a, split), getattr(b, split)
        np.testing.assert_array_equal(sa.tokens, sb.tokens)
        np.testing.assert_array_equal(sa.offsets, sb.offsets)
        np.testing.assert_array_equal(sa.labels, sb.labels)
    cfg = {"maxlen": 8, "padding": "post", "vocab_size": 1}
    pa, pb = a.prepare(cfg), b.prepare(cfg)
    for name in ("x_train", "y_train", "x_val", "y_val", "len_train", "len_val"):
        np.testing.assert_array_equal(getattr(pa, name), getattr(pb, name))
    # one feature: values of shape (total_steps,)
    flat = tmp_path / "flat.npz"
    np.savez(flat, x_train_values=np.arange(30.0), x_train_lengths=[10, 5, 15], y_train=[0, 1, 0])
    parts = readers.read_numeric_npz(flat)
    assert [x.shape for x in parts["train"][0]] == [(10, 1), (5, 1), (15, 1)]
    assert parts["train"][0][1][:, 0].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]


TINY_SPACE = """
name = "tiny-ragged"
description = "a tiny model for the ragged layout"

[dimensions]
cell = "gru"
units = 4
learning_rate = 1e-2
bidirectional = false
dropout = 0.0
maxlen = 12
batch_size = 32
"""


def test_ragged_layout_trains_through_the_cli(tmp_path):
    seqs, labels = ragged_sequences(n=120)
    path = write_ragged(tmp_path / "ragged.npz", seqs, labels, 100)
    space = tmp_path / "space.toml"
    space.write_text(TINY_SPACE)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--study",
            "ragged",
            "--space",
            str(space),
            "--data",
            str(path),
            "--trials",
            "1",
            "--max-epochs",
            "1",
            "--seed",
            "1",
            "--quiet",
            "--format",
            "json",
            "--storage",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["finished"] == 1
    assert 0.0 <= summary["best"]["value"] <= 1.0


def ragged_file(**arrays: object) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "r.npz"
        np.savez(path, **arrays)
        return path

    return make


V = np.ones((30, 2))
Y = np.array([0, 1, 0])
RAGGED_ERRORS = [
    (
        "lengths do not sum to the steps",
        ragged_file(x_train_values=V, x_train_lengths=[10, 10, 5], y_train=Y),
        "x_train_lengths sums to 25 steps, x_train_values holds 30",
    ),
    (
        "a negative length",
        ragged_file(x_train_values=V, x_train_lengths=[40, -5, -5], y_train=Y),
        "x_train_lengths holds a negative length (-5)",
    ),
    (
        "float lengths",
        ragged_file(x_train_values=V, x_train_lengths=[10.0, 10.0, 10.0], y_train=Y),
        "expected one integer length a sequence",
    ),
    (
        "counts differ from the labels",
        ragged_file(x_train_values=V, x_train_lengths=[15, 15], y_train=Y),
        "y_train has shape (3,); expected (2,) labels",
    ),
    (
        "values without lengths",
        ragged_file(x_train_values=V, y_train=Y),
        "x_train_values and x_train_lengths come together (x_train_lengths is missing)",
    ),
    (
        "both layouts at once",
        ragged_file(
            x_train=np.ones((3, 10, 2)), x_train_values=V, x_train_lengths=[10] * 3, y_train=Y
        ),
        "holds both x_train and x_train_values",
    ),
    (
        "3-D values",
        ragged_file(x_train_values=np.ones((30, 2, 2)), x_train_lengths=[10] * 3, y_train=Y),
        "x_train_values has shape (30, 2, 2); expected (total_steps, F) or (total_steps,)",
    ),
    (
        "test values without y_test",
        ragged_file(
            x_train_values=V,
            x_train_lengths=[10] * 3,
            y_train=Y,
            x_test_values=V,
            x_test_lengths=[10] * 3,
        ),
        "x_test and y_test come together",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in RAGGED_ERRORS], ids=[c[0] for c in RAGGED_ERRORS]
)
def test_ragged_layout_errors_are_one_line(tmp_path, make, message):
    path = make(tmp_path)
    result = run_cli(tmp_path, path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnsearch: error: "), result.stderr
    assert str(path) in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("umask", "mode"), [(0o077, 0o600), (0o022, 0o644), (0o002, 0o664)])
def test_cache_entries_follow_the_umask(own_cache: Path, umask: int, mode: int):
    old = os.umask(umask)
    try:
        path = cache.save("k", {"a": np.arange(3)}, {"m": 1})
    finally:
        os.umask(old)
    assert path is not None and path.stat().st_mode & 0o777 == mode
    assert [p.name for p in own_cache.iterdir()] == ["k.npz"]
    arrays, meta = cache.load("k")
    assert arrays["a"].tolist() == [0, 1, 2] and meta == {"m": 1}
