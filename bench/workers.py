"""Trials per hour with 1 and 2 worker processes on a fixed small space (issue 8).

    python bench/workers.py            # 8 trials per setting, 5,000-review slice, 2 epochs
    python bench/workers.py --quick    # 2 trials, 600 reviews, 1 epoch

Each setting runs `rnnsearch run --workers W` on a fresh SQLite file in a temporary folder and
times it end to end (process start, data preparation and all trials included). Pruning is off
in effect: every configuration is fixed but the units, so trials are comparable in cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from pathlib import Path as _P

sys.path.insert(0, str(_P(__file__).resolve().parent))
from common import IMDB_NPZ, RNNSEARCH, table, write_result  # noqa: E402

SPACE = """
name = "bench-workers"
[dimensions]
cell = "gru"
units = { low = 16, high = 32, step = 16 }
maxlen = 100
embedding_dim = 16
vocab_size = 5000
batch_size = 64
"""


def run(workers: int, trials: int, limit: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.toml"
        space.write_text(SPACE)
        started = time.perf_counter()
        proc = subprocess.run(
            [
                RNNSEARCH,
                "run",
                "--study",
                "bench",
                "--space",
                str(space),
                "--trials",
                str(trials),
                "--workers",
                str(workers),
                "--data",
                str(IMDB_NPZ),
                "--limit",
                str(limit),
                "--max-epochs",
                str(epochs),
                "--seed",
                "0",
                "--quiet",
                "--format",
                "json",
                "--storage",
                f"sqlite:///{tmp}/bench.db",
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"workers={workers}: rnnsearch failed:\n{proc.stderr[-3000:]}")
        summary = json.loads(proc.stdout)
    return {
        "workers": workers,
        "trials": summary["finished"],
        "seconds": round(seconds, 1),
        "trials_per_hour": round(summary["finished"] / seconds * 3600, 1),
        "best_val_accuracy": summary["best"]["value"] if summary["best"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    trials, limit, epochs = (2, 600, 1) if args.quick else (8, 5000, 2)
    rows = [run(int(w), trials, limit, epochs) for w in args.workers.split(",")]
    base = rows[0]["trials_per_hour"]
    for r in rows:
        r["speedup"] = round(r["trials_per_hour"] / base, 2)
    print(table(list(rows[0]), [list(r.values()) for r in rows]))
    path = write_result(
        "workers-quick" if args.quick else "workers",
        {"settings": {"trials": trials, "limit": limit, "epochs": epochs}, "rows": rows},
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
