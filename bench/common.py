"""Shared helpers of the benchmark scripts: paths, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RNNSEARCH_SHARED", REPO.parent / "shared"))
IMDB_NPZ = SHARED / "data" / "imdb" / "imdb.npz"
RESULTS = REPO / "bench" / "results"
RNNSEARCH = str(Path(sys.executable).with_name("rnnsearch"))

# Benchmarks time compiling from scratch: steps compiled by an earlier run (of a benchmark or of
# the user's searches) must not be loaded from the compilation cache (search/compile_cache.py).
# bench/compile_cache.py turns it on where it measures it.
os.environ["RNNSEARCH_COMPILE_CACHE"] = "off"


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [
        [f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
