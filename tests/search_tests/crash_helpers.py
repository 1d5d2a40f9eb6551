"""Shared pieces of the crash tests: real `rnnsearch` subprocesses, kill points, black-box checks.

Everything here talks to rnnsearch the way a user does: subprocesses of the installed
`rnnsearch` script (which honours the inherited PYTHONPATH), the named kill points of
search.faults (`RNNSEARCH_KILL_AT=point[@n]`: the n-th time in that process, SIGKILL itself), and
the study as `rnnsearch export --format json` shows it (per trial: state, extra, param_count,
params and the per-epoch curve). No file layout of checkpoints or other artefacts is assumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXE = str(Path(sys.executable).with_name("rnnsearch"))
KILL_ENV = "RNNSEARCH_KILL_AT"
FINISHED = ("complete", "pruned", "failed")
IN_TRIAL_POINTS = ("trial-started", "after-checkpoint", "after-epoch")

#: A tiny space: one epoch of 200-400 reviews takes well under a second on one core.
TINY_SPACE = """
name = "lifecycle"
[dimensions]
cell = { choice = ["gru", "simple"] }
units = { low = 4, high = 8 }
maxlen = 30
embedding_dim = 8
vocab_size = 1000
batch_size = 16
"""


def rnnsearch(
    args: Sequence[str],
    env: dict[str, str],
    *,
    kill_at: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """One `rnnsearch` process; ``kill_at`` sets the kill point (None: none at all)."""
    env = dict(env)
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run(
        [EXE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def base_env(storage_url: str | None = None) -> dict[str, str]:
    # The crash tests' processes run as users' runs do by default: under JAX, without
    # TensorFlow (about 4 s less at each start), their compiled steps loaded from the test
    # session's compilation cache once one process compiled them (search/compile_cache.py).
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "jax"}
    env.pop(KILL_ENV, None)
    if storage_url is not None:
        env["RNNSEARCH_STORAGE"] = storage_url
    else:
        env.pop("RNNSEARCH_STORAGE", None)
    return env


def assert_killed(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == -signal.SIGKILL, (
        f"{what}: expected the kill point to SIGKILL the process, got exit {proc.returncode}",
        proc.stderr[-2000:],
    )


def assert_ok(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, (what, proc.returncode, proc.stderr[-3000:])


def export(env: dict[str, str], study: str, storage: str | None = None) -> list[dict[str, Any]]:
    """Every trial of ``study`` with its curve, as `rnnsearch export --format json` gives it."""
    args = ["export", study, "--format", "json"]
    if storage is not None:
        args += ["--storage", storage]
    out = rnnsearch(args, env, timeout=120)
    assert_ok(out, f"export {study}")
    return json.loads(out.stdout)


def best(env: dict[str, str], study: str, storage: str | None = None) -> dict[str, Any]:
    args = ["best", study, "--format", "json"]
    if storage is not None:
        args += ["--storage", storage]
    out = rnnsearch(args, env, timeout=120)
    assert_ok(out, f"best {study}")
    return json.loads(out.stdout)[0]


def curve(row: dict[str, Any]) -> list[tuple[int, float, float]]:
    """A trial's recorded epochs as (epoch, loss, val_accuracy)."""
    return [(e["epoch"], e["loss"], e["val_accuracy"]) for e in row.get("curve") or []]


def resumed_from(row: dict[str, Any]) -> int | None:
    value = (row.get("extra") or {}).get("resumed_from_trial")
    return None if value is None else int(value)


def resumed_at(row: dict[str, Any]) -> int:
    return int((row.get("extra") or {}).get("resumed_at_epoch") or 0)


@dataclass
class Kill:
    """One killed step: its kill point and, when a trial was cut, that trial's record then."""

    point: str
    cut: int | None = None
    recorded: int = 0

    @property
    def checkpointed_at_least(self) -> int:
        # Every recorded epoch was checkpointed before it was recorded; `after-checkpoint` kills
        # right after a new epoch's checkpoint and before that epoch's record.
        return self.recorded + (1 if self.point.split("@")[0] == "after-checkpoint" else 0)


@dataclass
class Sequence_:
    """The outcome of a run of consecutive kills and a final clean resume."""

    kills: list[Kill] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: Each trial finished by the time of a kill, as the study showed it then (state, value,
    #: epochs and curve): later resumes must leave it exactly so.
    finished_before: dict[int, tuple[Any, ...]] = field(default_factory=dict)


def _finished_record(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["state"], row["value"], row["epochs_trained"], curve(row))


def run_kill_sequence(
    env: dict[str, str],
    study: str,
    run_args: Sequence[str],
    points: Iterable[str],
) -> Sequence_:
    """`run` killed at the first point, `resume` killed at each further one, then a clean
    `resume`. Every killed step must really die by SIGKILL; what it cut is noted from the study."""
    out = Sequence_()
    for i, point in enumerate(points):
        args = ["run", "--study", study, *run_args] if i == 0 else ["resume", study, "--quiet"]
        proc = rnnsearch(args, env, kill_at=point)
        assert_killed(proc, f"step {i} ({args[0]} with {KILL_ENV}={point})")
        rows = export(env, study)
        for r in rows:
            if r["state"] in FINISHED:
                out.finished_before.setdefault(r["trial"], _finished_record(r))
        running = [r for r in rows if r["state"] == "running"]
        assert len(running) <= 1, [(r["trial"], r["state"]) for r in rows]
        kill = Kill(point)
        if running:
            kill.cut = running[0]["trial"]
            kill.recorded = len(curve(running[0]))
        # These points lie inside a trial (it stays `running` until the next start finds it
        # dead); the others between trials.
        in_trial = point.split("@")[0] in IN_TRIAL_POINTS
        assert (kill.cut is not None) == in_trial, (point, [(r["trial"], r["state"]) for r in rows])
        out.kills.append(kill)
    if not out.kills:
        proc = rnnsearch(["run", "--study", study, *run_args, "--format", "json"], env)
    else:
        proc = rnnsearch(["resume", study, "--quiet", "--format", "json"], env)
    assert_ok(proc, "the final clean step")
    out.summary = json.loads(proc.stdout)
    out.rows = export(env, study)
    return out


def check_common(seq: Sequence_, max_epochs: int) -> dict[int, dict[str, Any]]:
    """Rules for every engine: the target reached exactly, nothing left running or waiting,
    unique trial numbers, every finished trial's epochs exactly 1..n, and every trial that had
    finished before a kill untouched by the resumes after it."""
    rows = seq.rows
    states = [(r["trial"], r["state"]) for r in rows]
    by_number = {r["trial"]: r for r in rows}
    assert len(by_number) == len(rows), f"trial numbers repeat: {states}"
    finished = [r for r in rows if r["state"] in FINISHED]
    assert seq.summary["finished"] == seq.summary["target"], seq.summary
    assert len(finished) == seq.summary["target"], (seq.summary, states)
    assert not [r for r in rows if r["state"] in ("running", "waiting")], states
    for r in finished:
        got = [e for e, _, _ in curve(r)]
        assert got == list(range(1, len(got) + 1)), (r["trial"], got)
        assert r["epochs_trained"] == len(got), (r["trial"], r["epochs_trained"], got)
        if r["state"] == "complete" and "stopped_early_at" not in (r.get("extra") or {}):
            assert len(got) == int(r["config"].get("epochs") or max_epochs), (r["trial"], got)
    for number, before in seq.finished_before.items():
        assert number in by_number, f"trial {number}, finished before a kill, is gone"
        assert _finished_record(by_number[number]) == before, (number, before)
    return by_number


def chains(by_number: dict[int, dict[str, Any]]) -> dict[int, list[int]]:
    """For every finished copy, its ancestors (oldest first), following resumed_from_trial.

    Asserts the chain rules: a copy continues an interrupted trial of the same parameters; every
    interrupted trial was continued by exactly one later trial; a finished trial by none; the
    chain from any interrupted trial ends at exactly one finished trial.
    """
    continued_by: dict[int, list[int]] = {}
    for number, row in by_number.items():
        origin = resumed_from(row)
        if origin is None:
            continue
        assert origin in by_number, f"trial {number} continues an unknown trial {origin}"
        assert origin < number, f"trial {number} continues a later trial {origin}"
        assert by_number[origin]["state"] == "interrupted", (number, origin)
        assert by_number[origin]["params"] == row["params"], (number, origin)
        continued_by.setdefault(origin, []).append(number)
    for number, row in by_number.items():
        copies = continued_by.get(number, [])
        if row["state"] == "interrupted":
            assert len(copies) == 1, f"interrupted trial {number} continued by {copies}"
        else:
            assert not copies, f"{row['state']} trial {number} continued again by {copies}"
    out: dict[int, list[int]] = {}
    for number, row in by_number.items():
        if row["state"] != "interrupted":
            continue
        path = [number]
        while by_number[path[-1]]["state"] == "interrupted":
            path.append(continued_by[path[-1]][0])
            assert len(path) <= len(by_number), f"a cycle of copies: {path}"
        end = path[-1]
        assert by_number[end]["state"] in FINISHED, (path, by_number[end]["state"])
        out.setdefault(end, [])
        for n in path[:-1]:
            if n not in out[end]:
                out[end].append(n)
    return {end: sorted(anc) for end, anc in out.items()}


def check_no_checkpointed_epoch_lost(
    seq: Sequence_, by_number: dict[int, dict[str, Any]], ancestors: dict[int, list[int]]
) -> None:
    """Optuna engine: a kill loses at most the epoch in flight, for any sequence of kills.

    A finished copy starts at (resumed_at_epoch) no fewer epochs than any ancestor recorded, or
    checkpointed (`after-checkpoint`), and its first epochs are those ancestors' epochs unchanged
    (restored and replayed, not trained again). Every trial with ancestors agrees with them on
    the epochs both recorded.
    """
    known = {k.cut: k.checkpointed_at_least for k in seq.kills if k.cut is not None}
    for end, anc in ancestors.items():
        row = by_number[end]
        need = max(max(len(curve(by_number[a])), known.get(a, 0)) for a in anc)
        assert resumed_at(row) >= need, (
            f"trial {end} (copy of {anc}) restarted at epoch {resumed_at(row)}; its ancestors "
            f"had checkpointed epoch {need}",
            [(k.point, k.cut, k.recorded) for k in seq.kills],
        )
        for a in anc:
            prefix = curve(by_number[a])
            assert curve(row)[: len(prefix)] == prefix, (
                f"trial {end}'s first epochs differ from its ancestor {a}'s recorded ones",
                curve(row),
                prefix,
            )
    for number, row in by_number.items():
        origin = resumed_from(row)
        while origin is not None:
            mine, theirs = curve(row), curve(by_number[origin])
            n = min(len(mine), len(theirs))
            assert mine[:n] == theirs[:n], (number, origin, mine, theirs)
            origin = resumed_from(by_number[origin])


def snapshot(root: Path) -> set[Path]:
    """Every file and folder under ``root`` (a layout-agnostic picture of what a run wrote)."""
    return {p.relative_to(root) for p in root.rglob("*")}


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
