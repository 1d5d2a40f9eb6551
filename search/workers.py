"""Worker processes on one study, spawned in one place (`run --workers N`).

Each worker is a fresh `rnnsearch worker` process (its own TensorFlow runtime and thread pools,
sized so that N workers share the cores). The storage URL reaches them through the environment,
never their command line, where `ps` would show a password.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from search.errors import SearchError
from search.trials import Observer, finished_count
from storage import ENV_VAR, StudyDatabase


def threads_per_worker(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def worker_environment(threads: int) -> dict[str, str]:
    """TensorFlow and OpenMP thread pools sized so that N workers share the cores."""
    return {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
        "OMP_NUM_THREADS": str(threads),
    }


def worker_command(study: str) -> list[str]:
    return [sys.executable, "-m", "search", "worker", study, "--quiet"]


def spawn_workers(db: StudyDatabase, study: str, workers: int, observer: Observer) -> int:
    """Run ``workers`` worker processes on the study, wait for them; how many trials they ran."""
    env = {**os.environ, **worker_environment(threads_per_worker(workers)), ENV_VAR: db.url}
    before = len(db.trials(study))
    # Their summaries would mix into this process's output; errors still reach stderr.
    procs = [
        subprocess.Popen(worker_command(study), env=env, stdout=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    seen = finished_count(db, study)
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            now = finished_count(db, study)
            if now != seen:
                observer.trial_finished(-1, "complete", None, now)
                seen = now
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
    return len(db.trials(study)) - before
