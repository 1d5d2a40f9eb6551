"""What the compilation cache on disk saves (search/compile_cache.py), side by side with it off.

    python bench/compile_cache.py            # 4,000 IMDB reviews
    python bench/compile_cache.py --quick    # 400 reviews, tiny models (the test suite's check)

Two scenarios, each run twice, one arm after the other: ``off`` (``RNNSEARCH_COMPILE_CACHE=off``,
as before the cache) and ``on`` (the cache, starting empty). Under Keras' JAX backend:

- ``resume``: a one-trial study of one fixed configuration (a bidirectional GRU-64 with max
  pooling over time at maxlen 400; ``--quick``: a GRU-8 at maxlen 60), killed with SIGKILL after
  its first epoch (``RNNSEARCH_KILL_AT=after-epoch@1``) and resumed. Reported: the resuming
  process's wall seconds and its trial's compilations, seconds spent on them and how many were
  loaded from the cache.
- ``hyperband``: a Hyperband search of the default space (``--quick``: a tiny space), 6 trials
  (``--quick``: 4), ``--max-epochs 3 --factor 3``. Keras Tuner's later rounds train round-0 configurations again
  in new trials. Reported per round: trials, compilations, their seconds, loaded from the cache.
  Keras Tuner draws its configurations with the same seed in both arms, but the two arms'
  trials have differed (accuracy decides which go on), so compare seconds per compilation.
  ``--quick`` runs this scenario with the cache on only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMDB_NPZ, RNNSEARCH, table, write_result  # noqa: E402

FIXED = """
name = "fixed"
[dimensions]
cell = "gru"
units = {units}
bidirectional = {bidirectional}
head = "{head}"
dropout = 0.2
learning_rate = 0.002
vocab_size = 10000
maxlen = {maxlen}
embedding_dim = 32
batch_size = 64
"""
FULL = {"units": 64, "bidirectional": "true", "head": "max", "maxlen": 400}
QUICK = {"units": 8, "bidirectional": "false", "head": "last", "maxlen": 60}
TINY_SPACE = """
name = "tiny"
[dimensions]
cell = { choice = ["gru", "lstm"] }
units = { low = 4, high = 8 }
bidirectional = { choice = [false, true] }
maxlen = 60
embedding_dim = 8
vocab_size = 1000
batch_size = 32
"""


def _env(arm: str, folder: Path) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "jax"}
    env.pop("RNNSEARCH_KILL_AT", None)
    env["RNNSEARCH_COMPILE_CACHE"] = "off" if arm == "off" else str(folder / "cache")
    return env


def _rnnsearch(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run([RNNSEARCH, *args], env=env, capture_output=True, text=True)
    return proc, round(time.perf_counter() - started, 2)


def _trials(url: str, env: dict[str, str]) -> list[dict]:
    """Every trial of the study with its record and curve (`rnnsearch export`)."""
    proc, _ = _rnnsearch(["export", "s", "--storage", url, "--format", "json"], env)
    if proc.returncode != 0:
        raise SystemExit(f"export failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _compiled(rows: list[dict]) -> dict:
    extras = [r.get("extra") or {} for r in rows]
    return {
        "trials": len(rows),
        "compilations": sum(int(e.get("compilations") or 0) for e in extras),
        "compile_s": round(sum(float(e.get("compile_seconds") or 0) for e in extras), 2),
        "cached": sum(int(e.get("compilations_cached") or 0) for e in extras),
    }


def resume(arm: str, limit: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="rnnsearch-bench-cc-") as tmp:
        folder = Path(tmp)
        env = _env(arm, folder)
        space = folder / "fixed.toml"
        space.write_text(FIXED.format(**(QUICK if quick else FULL)))
        url = f"sqlite:///{folder / 'study.db'}"
        common = ["--storage", url, "--quiet"]
        first, first_s = _rnnsearch(
            ["run", "--study", "s", "--space", str(space), "--trials", "1", "--max-epochs", "3",
             "--data", str(IMDB_NPZ), "--limit", str(limit), "--seed", "0", *common],
            {**env, "RNNSEARCH_KILL_AT": "after-epoch@1"},
        )  # fmt: skip
        if first.returncode != -9:
            raise SystemExit(f"the run was not killed (exit {first.returncode}):\n{first.stderr}")
        again, again_s = _rnnsearch(["resume", "s", *common], env)
        if again.returncode != 0:
            raise SystemExit(f"resume failed:\n{again.stderr[-2000:]}")
        rows = _trials(url, env)
        resumed = [r for r in rows if (r.get("extra") or {}).get("resumed_from_trial") is not None]
        return {
            "killed_run_s": first_s,
            "resume_s": again_s,
            **_compiled(resumed),
            "states": [r["state"] for r in rows],
            # what the resumed trial learned, epoch by epoch (the same with the cache or not)
            "val_accuracy": [e["val_accuracy"] for r in resumed for e in r.get("curve") or []],
            "cache_entries": len(list((folder / "cache").glob("jax-*/*-cache"))),
            "cache_folder_made": (folder / "cache").exists(),
            "cache_read_errors": "Error reading persistent compilation cache" in again.stderr,
        }


def hyperband(arm: str, limit: int, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="rnnsearch-bench-cc-") as tmp:
        folder = Path(tmp)
        env = _env(arm, folder)
        space = "default"
        if quick:
            (folder / "tiny.toml").write_text(TINY_SPACE)
            space = str(folder / "tiny.toml")
        url = f"sqlite:///{folder / 'study.db'}"
        proc, wall = _rnnsearch(
            ["run", "--study", "s", "--engine", "hyperband", "--space", space, "--trials",
             "4" if quick else "6",
             "--max-epochs", "3", "--factor", "3", "--data", str(IMDB_NPZ), "--limit",
             str(limit), "--seed", "0", "--storage", url, "--quiet"],
            env,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"hyperband failed:\n{proc.stderr[-2000:]}")
        rows = _trials(url, env)
        later = [r for r in rows if int((r.get("extra") or {}).get("round") or 0) > 0]
        first = [r for r in rows if r not in later]
        return {"wall_s": wall, "round0": _compiled(first), "later_rounds": _compiled(later)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="reviews (default 4,000)")
    args = parser.parse_args()
    limit = args.limit or (400 if args.quick else 4000)
    results: dict = {"limit": limit, "quick": args.quick, "resume": {}, "hyperband": {}}
    rows = []
    for arm in ("off", "on"):
        r = resume(arm, limit, args.quick)
        results["resume"][arm] = r
        rows.append(["resume", arm, r["resume_s"], r["compilations"], r["compile_s"], r["cached"]])
        print(f"resume {arm}: {r}", flush=True)
    # --quick checks that a later round loads its steps; the side by side is the full run's
    for arm in ("on",) if args.quick else ("off", "on"):
        h = hyperband(arm, limit, args.quick)
        results["hyperband"][arm] = h
        for part in ("round0", "later_rounds"):
            c = h[part]
            rows.append(
                [f"hyperband {part} ({c['trials']} trials)", arm, h["wall_s"],
                 c["compilations"], c["compile_s"], c["cached"]]
            )  # fmt: skip
        print(f"hyperband {arm}: {h}", flush=True)
    print(
        table(
            ["scenario", "cache", "wall_s", "compilations", "compile_s", "from_cache"],
            rows,
        )
    )
    print(f"written: {write_result('compile_cache', results)}")


if __name__ == "__main__":
    main()
