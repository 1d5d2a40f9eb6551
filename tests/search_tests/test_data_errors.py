"""Bad data: one line on stderr naming the file and the problem, exit code 2 (a table test)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import search.data as data
from search.cli import app


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_SOURCES", {})


def csv_file(text: str, name: str = "d.csv") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        if name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return make


def npz_file(**arrays: object) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "d.npz"
        np.savez(path, **arrays)
        return path

    return make


def objects(*arrays: np.ndarray) -> np.ndarray:
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def folder(tmp: Path) -> Path:
    (tmp / "texts" / "test" / "pos").mkdir(parents=True)
    return tmp / "texts"


def corrupt_gzip(tmp: Path, name: str, text: str) -> Path:
    """A gzip file whose compressed stream is damaged in the middle (zlib.error on reading)."""
    packed = gzip.compress(text.encode())
    path = tmp / name
    path.write_bytes(packed[:20] + b"\0" * 50 + packed[70:])
    return path


def truncated_gzip(tmp: Path, name: str, text: str) -> Path:
    """A gzip file cut in half (EOFError on reading)."""
    packed = gzip.compress(text.encode())
    path = tmp / name
    path.write_bytes(packed[: len(packed) // 2])
    return path


def write_bytes(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def long_rows(sequences: int) -> str:
    """A long-format numeric CSV: sequences of 10 steps, one feature, two classes."""
    rows = [f"{s},{t},{(s * 7 + t) % 10 / 10},{s % 2}" for s in range(sequences) for t in range(10)]
    return "sequence_id,step,f1,label\n" + "\n".join(rows) + "\n"


def unreadable(tmp: Path) -> Path:
    """A file this process may not read: mode 000, or where root reads anything, a write-only
    kernel file behind a link."""
    import os

    path = tmp / "locked.csv"
    if os.geteuid() == 0:
        target = Path("/sys/bus/pci/rescan")
        if not target.exists():
            pytest.skip("running as root without a write-only file to stand for an unreadable one")
        path.symlink_to(target)
        return path
    path.write_text("text,label\n" + GOOD_ROWS)
    path.chmod(0)
    return path


GOOD_ROWS = "".join(f"{'nice' if i % 2 else 'bad'} film,{i % 2}\n" for i in range(20))
JSONL_ROWS = "".join(
    json.dumps({"text": f"{'nice' if i % 2 else 'bad'} film", "label": i % 2}) + "\n"
    for i in range(20)
)
X3 = np.random.default_rng(0).normal(size=(20, 4, 2))
Y3 = np.arange(20) % 2

CASES = [
    (
        "missing text column",
        csv_file("review,label\n" + GOOD_ROWS),
        [],
        "no column 'text' (columns: review, label); pass --text-col",
    ),
    (
        "missing label column",
        csv_file("text,stars\n" + GOOD_ROWS),
        [],
        "no column 'label' (columns: text, stars); pass --label-col",
    ),
    (
        "missing split column",
        csv_file("text,label\n" + GOOD_ROWS),
        ["--split-col", "part"],
        "no column 'part'",
    ),
    (
        "single class",
        csv_file("text,label\n" + "".join(f"film {i},1\n" for i in range(20))),
        [],
        "holds a single class",
    ),
    ("empty file", csv_file(""), [], "empty file"),
    ("empty gz file", csv_file("", "d.csv.gz"), [], "empty file: no header row and no data"),
    ("header only", csv_file("text,label\n"), [], "empty file: no data rows"),
    (
        "non-integer labels in a CSV",
        csv_file("text,label\n" + "a b,0.5\nc d,1\n" * 10),
        [],
        "non-integer labels (e.g. '0.5')",
    ),
    (
        "bad split value",
        csv_file("text,label,split\n" + "a b,0,dev\nc d,1,train\n" * 10),
        [],
        "split column 'split' holds 'dev'",
    ),
    (
        "JSON lines without the text key",
        csv_file(
            "\n".join(json.dumps({"body": "x", "label": i % 2}) for i in range(20)), "d.jsonl"
        ),
        [],
        "no key 'text'",
    ),
    (
        "a line that is not JSON",
        csv_file('{"text": "a", "label": 0}\n{oops\n', "d.jsonl"),
        [],
        "line 2: not JSON",
    ),
    (
        "non-numeric features",
        npz_file(x_train=np.full((20, 3, 2), "a"), y_train=Y3),
        [],
        "x_train holds non-numeric features",
    ),
    (
        "non-numeric features in a long CSV",
        csv_file(
            "sequence_id,step,f,label\n"
            + "".join(f"s{i},0,{'x' if i == 7 else i},{i % 2}\n" for i in range(20))
        ),
        [],
        "feature 'f' holds 'x', not a number",
    ),
    (
        "ragged arrays that are not (T, F) object arrays",
        npz_file(x_train=objects(*[np.ones(3 + i % 2) for i in range(20)]), y_train=Y3),
        [],
        "x_train[0] has shape (3,)",
    ),
    (
        "feature counts differ",
        npz_file(x_train=objects(np.ones((3, 2)), np.ones((4, 3))), y_train=np.array([0, 1])),
        [],
        "x_train[1] has 3 features, x_train[0] 2",
    ),
    (
        "2-D numbers instead of (N, T, F)",
        npz_file(x_train=np.ones((20, 5)), y_train=Y3),
        [],
        "x_train has shape (20, 5); expected (N, T, F)",
    ),
    (
        "non-integer labels in an npz",
        npz_file(x_train=X3, y_train=Y3 + 0.5),
        [],
        "y_train holds non-integer labels (e.g. 0.5)",
    ),
    (
        "string labels in an npz",
        npz_file(x_train=X3, y_train=Y3.astype(str)),
        [],
        "y_train holds non-integer labels",
    ),
    (
        "NaN features",
        npz_file(x_train=np.where(X3 > 2, np.nan, X3), y_train=Y3),
        [],
        "NaN or infinite",
    ),
    (
        "x_test without y_test",
        npz_file(x_train=X3, y_train=Y3, x_test=X3),
        [],
        "x_test and y_test come together",
    ),
    ("a folder without train/", folder, [], "there is no train/ folder"),
    ("unsupported file type", csv_file("x", "d.parquet"), [], "unsupported data file"),
    ("no such file", lambda tmp: tmp / "missing.csv", [], "no such file or folder"),
    ("corrupt gzip CSV", lambda tmp: corrupt_gzip(tmp, "d.csv.gz", "text,label\n" + GOOD_ROWS * 50),
     [], "cannot read as CSV"),
    ("corrupt gzip JSON lines",
     lambda tmp: corrupt_gzip(tmp, "d.jsonl.gz", JSONL_ROWS * 50), [], "cannot read as JSON lines"),
    ("truncated gzip long CSV",
     lambda tmp: truncated_gzip(tmp, "l.csv.gz", long_rows(40)), [], "cannot read as CSV"),
    ("long CSV, bad bytes after 64 KB",
     lambda tmp: write_bytes(tmp, "l.csv", long_rows(3000).encode() + b"999,0,\xe9\xff,1\n"),
     [], "cannot read as CSV"),
    ("long CSV, a step twice", csv_file(long_rows(20) + "0,3,0.5,0\n"), [],
     "sequence '0' has step 3 twice"),
    ("long CSV, a NaN step", csv_file(long_rows(20) + "0,nan,0.5,0\n"), [],
     "step 'nan'; expected a finite number"),
    ("long CSV, an infinite feature",
     csv_file(long_rows(20) + "99,0,1e400,1\n"), [], "NaN or infinite"),
    ("x_test with other features",
     npz_file(x_train=X3, y_train=Y3, x_test=X3[:, :, :1], y_test=Y3),
     [], "x_test has 1 features per step, x_train 2"),
    ("features beyond float32", npz_file(x_train=X3 * 1e200, y_train=Y3), [],
     "expected features within float32's range"),
    ("unreadable file", unreadable, [], "cannot read"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "extra", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_data_exits_2_with_one_line_naming_file_and_problem(tmp_path, make, extra, message):
    path = make(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--study",
            "bad",
            "--data",
            str(path),
            "--trials",
            "1",
            "--quiet",
            "--storage",
            f"sqlite:///{tmp_path / 'bad.db'}",
            *extra,
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rnnsearch: error: ")
    assert str(path) in lines[0] or path.name in lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_run_help_lists_the_data_options():
    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0, result.output
    for flag in ("--text-col", "--label-col", "--split-col", "--no-bucketing"):
        assert flag in result.output
