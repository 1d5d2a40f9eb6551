"""Resident memory after each of 30 sequential trials (issue 9, item 4).

    python bench/memory.py           # 30 trials each
    python bench/memory.py --quick   # 3 trials each

Two runs in separate processes, side by side: rnnsearch's Optuna worker (which clears the Keras
session after every trial), and the baseline loop people write (build, fit, next; no clearing).
Growth = RSS after the last trial minus RSS after the first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, table, write_result  # noqa: E402

SPACE = """
name = "bench-memory"
[dimensions]
cell = { choice = ["gru", "lstm", "simple"] }
units = { low = 16, high = 64, step = 16 }
maxlen = 100
embedding_dim = 16
vocab_size = 5000
batch_size = 64
"""

CHILD = r"""
import json, os, sys, tempfile
import psutil
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
mode, trials, npz = sys.argv[1], int(sys.argv[2]), sys.argv[3]
space_text = sys.argv[4]
proc = psutil.Process()
rss = []
if mode == "rnnsearch":
    from search.service import RunRequest, SilentObserver, run_search
    class Recorder(SilentObserver):
        def trial_finished(self, number, state, value, finished):
            rss.append(proc.memory_info().rss / 2**20)
    with tempfile.TemporaryDirectory() as tmp:
        open(f"{tmp}/s.toml", "w").write(space_text)
        run_search(RunRequest(study="m", storage=f"sqlite:///{tmp}/m.db", space=f"{tmp}/s.toml",
                              trials=trials, data=npz, limit=1000, max_epochs=1, seed=0),
                   Recorder())
else:
    import random
    from search import tfenv
    tfenv.quiet_import()
    import keras
    from search.data import load_source
    from spaces import parse_space_text
    space = parse_space_text(space_text, "bench")
    data = load_source(npz, limit=1000)
    rng = random.Random(0)
    for i in range(trials):
        cfg = space.resolve({"cell": rng.choice(["gru", "lstm", "simple"]),
                             "units": rng.choice([16, 32, 48, 64])}, max_epochs=1)
        prepared = data.prepare(cfg)
        model = keras.Sequential([
            keras.Input((cfg["maxlen"],), dtype="int32"),
            keras.layers.Embedding(cfg["vocab_size"], cfg["embedding_dim"]),
            {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM,
             "simple": keras.layers.SimpleRNN}[cfg["cell"]](cfg["units"]),
            keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        model.fit(prepared.x_train, prepared.y_train, validation_data=(prepared.x_val, prepared.y_val),
                  epochs=1, batch_size=64, verbose=0)
        rss.append(proc.memory_info().rss / 2**20)
print(json.dumps(rss))
"""


def measure(mode: str, trials: int) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(trials), str(IMDB_NPZ), SPACE],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    trials = 3 if args.quick else 30
    runs = {mode: measure(mode, trials) for mode in ("rnnsearch", "baseline")}
    rows = []
    for mode, rss in runs.items():
        rows.append(
            [
                mode,
                len(rss),
                round(rss[0], 1),
                round(rss[-1], 1),
                round(rss[-1] - rss[0], 1),
                round(max(rss), 1),
            ]
        )
    print(table(["run", "trials", "rss_first_mb", "rss_last_mb", "growth_mb", "peak_mb"], rows))
    path = write_result(
        "memory-quick" if args.quick else "memory",
        {"rss_mb_after_each_trial": runs, "target_growth_mb": 150},
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
