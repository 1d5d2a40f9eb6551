"""Worker processes on one study, spawned in one place (`run --workers N`).

Each worker is a fresh `rnnsearch worker` process (its own TensorFlow runtime and thread pools,
sized so that N workers share the cores). The storage URL reaches them through the environment,
never their command line, where `ps` would show a password.

GPUs: on a machine with GPUs (``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``), worker
*i* sees GPU *i mod G* only (``CUDA_VISIBLE_DEVICES``), and TensorFlow allocates GPU memory as it
needs it (``TF_FORCE_GPU_ALLOW_GROWTH``) instead of taking the whole card, so two workers can
share one GPU when N exceeds the GPUs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

from search.errors import SearchError
from search.progress import WORKER_COUNT_VAR, WORKER_INDEX_VAR, WorkerRow
from search.trials import Observer
from storage import ENV_VAR, FINISHED_STATES, StudyDatabase, TrialState

#: Seconds between two looks at the study database while workers run.
POLL_SECONDS = 1.0


def threads_per_worker(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs workers may use: ``CUDA_VISIBLE_DEVICES`` when it is set (an empty value or -1
    means none), else the GPUs ``nvidia-smi -L`` lists (none without the tool)."""
    environ = os.environ if environ is None else environ
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [g.strip() for g in given.split(",") if g.strip()]
        # CUDA stops at the first invalid id; -1 is the usual way of saying "no GPU".
        return [] if not ids or ids[0] == "-1" else ids
    tool = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if tool is None:
        return []
    try:
        out = subprocess.run(
            [tool, "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line for line in out.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(lines))]


def worker_environment(
    threads: int, index: int = 0, gpus: list[str] | None = None, workers: int = 1
) -> dict[str, str]:
    """What worker ``index`` (0-based) gets on top of this process's environment: thread pools
    sized so that N workers share the cores, its 1-based number, and round-robin its GPU."""
    env = {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
        "OMP_NUM_THREADS": str(threads),
        WORKER_INDEX_VAR: str(index + 1),
        WORKER_COUNT_VAR: str(workers),
    }
    if threads == 1:
        # JAX's CPU backend otherwise runs every worker's steps on all cores.
        flags = os.environ.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        # JAX takes 75% of a GPU's memory up front unless told to grow as TensorFlow does.
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def worker_environments(
    workers: int, environ: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """Each worker's full environment (this process's, plus :func:`worker_environment`)."""
    environ = dict(os.environ if environ is None else environ)
    gpus = visible_gpus(environ)
    threads = threads_per_worker(workers)
    return [{**environ, **worker_environment(threads, i, gpus, workers)} for i in range(workers)]


def worker_command(study: str, progress: str = "off", tensorboard: str | None = None) -> list[str]:
    """A worker's command line (no storage URL: that travels in the environment)."""
    command = [sys.executable, "-m", "search", "worker", study, "--progress", progress]
    if tensorboard:
        command += ["--tensorboard", tensorboard]
    return command


def _started_trials(db: StudyDatabase, study: str) -> int:
    """Trials that ran or run (queued copies and start points waiting to run are not counted)."""
    return sum(1 for t in db.trials(study) if t.state != TrialState.WAITING)


def spawn_workers(
    db: StudyDatabase,
    study: str,
    workers: int,
    observer: Observer,
    *,
    progress: str = "off",
    tensorboard: str | None = None,
) -> int:
    """Run ``workers`` worker processes on the study, wait for them; how many trials they ran.

    ``progress``: ``log`` lets each worker write its own lines (named by its number); otherwise
    workers are silent and this process shows each worker's trial and epoch, read from the
    study database, through ``observer.workers_status``.
    """
    envs = worker_environments(workers)
    for env in envs:
        env[ENV_VAR] = db.url
    before = _started_trials(db, study)
    worker_progress = "log" if progress == "log" else "off"
    # Their summaries would mix into this process's output; errors still reach stderr.
    procs = [
        subprocess.Popen(
            worker_command(study, worker_progress, tensorboard),
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for env in envs
    ]
    names = {p.pid: f"worker {i + 1}" for i, p in enumerate(procs)}
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(POLL_SECONDS)
            _report(db, study, names, observer)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    failed = [p.returncode for p in procs if p.returncode != 0]
    if failed:
        raise SearchError(
            f"{len(failed)} of {workers} workers of {study!r} exited with an error "
            f"(exit codes {failed}); see their messages above"
        )
    return _started_trials(db, study) - before


def _report(db: StudyDatabase, study: str, names: dict[int, str], observer: Observer) -> None:
    """What each worker runs now, and the study's finished trials, to the observer."""
    trials = db.trials(study)
    rows = [
        WorkerRow(
            worker=names.get(int(t.extra.get("pid", -1)), f"pid {t.extra.get('pid')}"),
            trial=t.number,
            epoch=t.epochs,
            epochs=int(t.config.get("epochs") or t.epochs or 1),
        )
        for t in trials
        # A trial Optuna has handed out but whose worker has not yet written its row: next time.
        if t.state == TrialState.RUNNING and "pid" in t.extra
    ]
    done = [t.duration_s or 0.0 for t in trials if t.state in FINISHED_STATES]
    observer.workers_status(sorted(rows, key=lambda r: r.worker), len(done), done)
