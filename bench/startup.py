"""What a run's start costs under JAX, the default backend: with and without TensorFlow loaded.

    python bench/startup.py            # 3 rounds; each: one run per arm, a 1-trial search
    python bench/startup.py --quick    # 1 round

Keras imports TensorFlow whenever it is installed, whatever the backend (to seed it, and to check
for its types when a model is saved); rnnsearch now tells Keras under JAX that TensorFlow is not
there until something needs it (search.tfenv). Each arm is `rnnsearch run` of a one-trial,
one-epoch search on a small slice of IMDB (JAX, a fresh SQLite file), timed end to end (process
start, imports, data, compiling, the epoch, the records):

- ``tensorflow-loaded``: as before, the process imports TensorFlow first (what Keras did);
- ``jax-only``: as rnnsearch runs now.

The arms alternate within a round, so the machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, table, write_result  # noqa: E402

SPACE = """
name = "bench-startup"
[dimensions]
cell = "gru"
units = 16
maxlen = 100
embedding_dim = 16
vocab_size = 5000
batch_size = 64
"""

#: The child: `rnnsearch` with the arguments given, TensorFlow imported first where asked; it
#: prints whether TensorFlow was loaded by the end.
CHILD = """
import sys
if sys.argv[1] == "tensorflow-loaded":
    import tensorflow  # noqa: F401
from search.cli import main
sys.argv = ["rnnsearch", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("tensorflow loaded:", "tensorflow" in sys.modules)
"""
ARMS = ("tensorflow-loaded", "jax-only")


def one_run(arm: str, limit: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.toml"
        space.write_text(SPACE)
        args = [
            "run", "--study", "s", "--space", str(space), "--trials", "1", "--max-epochs", "1",
            "--data", str(IMDB_NPZ), "--limit", str(limit), "--seed", "0", "--quiet",
            "--backend", "jax", "--storage", f"sqlite:///{tmp}/s.db",
        ]  # fmt: skip
        env = {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, arm, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=600,
        )
        seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{arm}: rnnsearch run failed:\n{proc.stderr[-3000:]}")
    return {"seconds": round(seconds, 3), "tensorflow_loaded": "loaded: True" in proc.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--limit", type=int, default=1000, help="reviews of the slice")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    limit = 300 if args.quick else args.limit
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for _ in range(rounds):
        for arm in ARMS:
            runs[arm].append(one_run(arm, limit))
    medians = {arm: statistics.median(r["seconds"] for r in runs[arm]) for arm in ARMS}
    rows = [
        [arm, medians[arm], round(medians[arm] - medians["jax-only"], 3),
         all(r["tensorflow_loaded"] for r in runs[arm])]
        for arm in ARMS
    ]  # fmt: skip
    headers = ["arm", "median s per run", "s more than jax-only", "tensorflow loaded"]
    print(table(headers, rows))
    path = write_result(
        "startup-quick" if args.quick else "startup",
        {
            "settings": {"rounds": rounds, "limit": limit, "trials": 1, "epochs": 1},
            "runs": runs,
            "headers": headers,
            "table": rows,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
