"""How a run shows its progress on stderr (stdout stays parseable).

Three observers of :class:`search.trials.Observer` events:

* :class:`RichObserver`: a live display in a terminal: the study's trials with an estimate of the
  time left, the running trial's epochs, progress within an epoch, and with ``--workers N`` one
  line per worker (its trial and epoch, read from the study database by the parent process);
* :class:`LogObserver`: when stderr is not a terminal (nohup, tmux logging, a batch scheduler,
  CI), one plain line per epoch and per finished trial, each flushed at once, so a log file shows
  a long search while it runs (Rich's live display draws only at the end there);
* ``--quiet``: :class:`search.trials.SilentObserver`, nothing.

:class:`Pace` holds what both estimate the time left from: finished trials' durations, the time
budget and the running trial's epochs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from search.output import params_text

#: How progress is shown: ``auto`` picks ``bar`` in a terminal, ``log`` elsewhere.
PROGRESS_MODES = ("auto", "bar", "log", "off")
#: Set by ``run --workers N`` for each worker process: its 1-based index (log lines name it)
#: and N (a worker's estimate of the time left counts the others' share).
WORKER_INDEX_VAR = "RNNSEARCH_WORKER_INDEX"
WORKER_COUNT_VAR = "RNNSEARCH_WORKERS"


def duration_text(seconds: float | None) -> str:
    """``1h05m``, ``12m30s`` or ``42s`` (``?`` when unknown)."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def metrics_text(metrics: dict[str, float]) -> str:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in metrics]
    keys += sorted(k for k in metrics if k not in keys)
    return " ".join(f"{k} {metrics[k]:.4f}" for k in keys)


@dataclass
class Pace:
    """The figures an estimate of the time left is made of (one process's view)."""

    target: int = 0
    finished: int = 0
    workers: int = 1
    #: The study's time budget and the training time it had used when this run started.
    budget_s: float | None = None
    spent_before_s: float = 0.0
    trial_seconds: list[float] = field(default_factory=list)
    #: The running trial: when it started, its epochs' seconds, how many epochs it may train.
    trial_started: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    trial_epochs: int = 0

    def mean_trial_s(self) -> float | None:
        if self.trial_seconds:
            return sum(self.trial_seconds) / len(self.trial_seconds)
        if self.epoch_seconds:  # no trial finished yet: the running one's epochs at full length
            return sum(self.epoch_seconds) / len(self.epoch_seconds) * max(1, self.trial_epochs)
        return None

    def left_s(self) -> float | None:
        """Seconds until the study reaches its target or spends its budget (None: unknown)."""
        mean = self.mean_trial_s()
        if mean is None:
            return None
        left = max(0, self.target - self.finished) * mean / max(1, self.workers)
        if self.trial_started is not None:  # the running trial has done part of its share
            left = max(0.0, left - (time.perf_counter() - self.trial_started) / self.workers)
        if self.budget_s:
            # A trial running when the budget runs out ends after its epoch (search.trials).
            started = self.trial_started
            running = 0.0 if started is None else time.perf_counter() - started
            spent = self.spent_before_s + sum(self.trial_seconds) + running
            epoch = max(self.epoch_seconds, default=0.0)
            left = min(left, max(0.0, self.budget_s - spent) / max(1, self.workers) + epoch)
        return left

    def left_text(self) -> str:
        left = self.left_s()
        if left is None:
            return ""
        goal = f"target {self.target} trials"
        if self.budget_s:
            goal += f" or budget {duration_text(self.budget_s)}"
        return f"about {duration_text(left)} left ({goal})"


class _Counting:
    """Event bookkeeping shared by the observers (what :class:`Pace` needs)."""

    def __init__(self) -> None:
        self.pace = Pace()
        self.best: float | None = None
        self.best_trial: int | None = None
        self.study = ""

    def _ready(self, study: str, finished: int, target: int) -> None:
        self.study = study
        self.pace.finished = finished
        self.pace.target = target

    def _trial_started(self, epochs: int) -> None:
        self.pace.trial_started = time.perf_counter()
        self.pace.epoch_seconds = []
        self.pace.trial_epochs = epochs

    def _trial_finished(self, number: int, state: str, value: float | None, finished: int) -> float:
        seconds = 0.0
        if self.pace.trial_started is not None:
            seconds = time.perf_counter() - self.pace.trial_started
            self.pace.trial_seconds.append(seconds)
        self.pace.trial_started = None
        self.pace.finished = finished
        if state == "complete" and value is not None and (self.best is None or value > self.best):
            self.best, self.best_trial = value, number
        return seconds


class LogObserver(_Counting):
    """One plain, flushed line per epoch and per finished trial (stderr not a terminal)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        index = os.environ.get(WORKER_INDEX_VAR)
        self.prefix = f"rnnsearch[worker {index}]" if index else "rnnsearch"

    def _line(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.stream.write(f"{stamp} {self.prefix}: {text}\n")
        self.stream.flush()

    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None:
        self._ready(study, finished, target)
        verb = "continuing" if resumed else "new"
        self._line(f"study {study} ({verb}): {finished}/{target} trials finished")

    def time_budget(self, budget_s: float | None, spent_s: float, workers: int) -> None:
        siblings = os.environ.get(WORKER_COUNT_VAR, "")
        workers = max(workers, int(siblings) if siblings.isdigit() else 1)
        self.pace.budget_s, self.pace.spent_before_s, self.pace.workers = budget_s, spent_s, workers
        if budget_s:
            self._line(
                f"time budget {duration_text(budget_s)}, {duration_text(spent_s)} used before "
                "this run"
            )

    def settings_changed(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._line(f"study {self.study}: {line}")

    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None:
        self._trial_started(epochs)
        # Sampled floats as tables show them (dropout=0.418, not 0.41802027941768827).
        shown = params_text({k: v for k, v in config.items() if k != "epochs"})
        self._line(f"trial {number} started (up to {epochs} epochs): {shown}")

    def epoch_done(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        trial_s = now - (self.pace.trial_started or now)
        self.pace.epoch_seconds.append(trial_s - sum(self.pace.epoch_seconds))
        tail = [f"trial {duration_text(trial_s)}", f"run {duration_text(now - self.started)}"]
        left = self.pace.left_text()
        if left:
            tail.append(left)
        self._line(
            f"trial {number} epoch {epoch}/{epochs}: {metrics_text(metrics)}; " + ", ".join(tail)
        )

    def trial_finished(self, number: int, state: str, value: float | None, finished: int) -> None:
        seconds = self._trial_finished(number, state, value, finished)
        shown = f" val_accuracy {value:.4f}" if value is not None else ""
        best = f"; best {self.best:.4f} (trial {self.best_trial})" if self.best is not None else ""
        left = self.pace.left_text()
        self._line(
            f"trial {number} {state}{shown} in {duration_text(seconds)}; "
            f"{finished}/{self.pace.target} finished{best}" + (f"; {left}" if left else "")
        )

    def batch_done(self, number: int, batch: int, steps: int | None) -> None:
        pass  # a log gets a line per epoch, not per batch

    def workers_status(
        self, rows: list[WorkerRow], finished: int, trial_seconds: list[float]
    ) -> None:
        pass  # each worker writes its own lines

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class WorkerRow:
    """What one worker process is doing (read from the study database)."""

    worker: str
    trial: int
    epoch: int
    epochs: int


class RichObserver(_Counting):
    """A Rich live display on stderr (a terminal)."""

    def __init__(self, enabled: bool = True, console: Any = None) -> None:
        super().__init__()
        self.enabled = enabled
        #: A Rich Console (default: stderr's).
        self.console = console
        self._progress: Any = None
        self._trials: Any = None
        self._epochs: Any = None
        self._batches: Any = None
        self._workers: dict[str, Any] = {}

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console if self.console is not None else Console(stderr=True),
            transient=False,
        )
        self._progress.start()

    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None:
        self._ready(study, finished, target)
        if not self.enabled:
            return
        self._start()
        verb = "continuing" if resumed else "new"
        self._trials = self._progress.add_task(
            f"{study} ({verb}) trials", total=target, completed=finished, info=""
        )

    def time_budget(self, budget_s: float | None, spent_s: float, workers: int) -> None:
        self.pace.budget_s, self.pace.spent_before_s, self.pace.workers = budget_s, spent_s, workers

    def settings_changed(self, lines: Sequence[str]) -> None:
        if self.enabled and self._progress is not None:
            for line in lines:
                self._progress.console.print(f"study {self.study}: {line}", markup=False)

    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None:
        self._trial_started(epochs)
        if not self._progress:
            return
        for task in (self._epochs, self._batches):
            if task is not None:
                self._progress.remove_task(task)
        self._batches = None
        desc = f"  trial {number} {config['cell']}-{config['units']}"
        if config.get("bidirectional"):
            desc += " bi"
        self._epochs = self._progress.add_task(desc, total=epochs, info="")

    def batch_done(self, number: int, batch: int, steps: int | None) -> None:
        """Progress within an epoch (long epochs): batches done of the epoch's steps."""
        if not self._progress or self._epochs is None:
            return
        if self._batches is None:
            self._batches = self._progress.add_task("    batches", total=steps, info="")
        self._progress.update(self._batches, completed=batch, total=steps)

    def epoch_done(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        trial_s = now - (self.pace.trial_started or now)
        self.pace.epoch_seconds.append(trial_s - sum(self.pace.epoch_seconds))
        if not self._progress or self._epochs is None:
            return
        info = f"val_acc {metrics.get('val_accuracy', float('nan')):.4f}"
        self._progress.update(self._epochs, completed=epoch, info=info)
        if self._batches is not None:
            self._progress.update(self._batches, completed=0)
        self._update_study_info()

    def trial_finished(self, number: int, state: str, value: float | None, finished: int) -> None:
        self._trial_finished(number, state, value, finished)
        if not self._progress:
            return
        self._update_study_info(last=state)

    def _update_study_info(self, last: str | None = None) -> None:
        parts = []
        if last:
            parts.append(f"last: {last}")
        if self.best is not None:
            parts.append(f"best {self.best:.4f}")
        left = self.pace.left_s()
        if left is not None:
            parts.append(f"~{duration_text(left)} left")
        self._progress.update(self._trials, completed=self.pace.finished, info="; ".join(parts))

    def workers_status(
        self, rows: list[WorkerRow], finished: int, trial_seconds: list[float]
    ) -> None:
        """``--workers N``: one line per worker with its trial and epoch."""
        self.pace.finished = finished
        self.pace.trial_seconds = list(trial_seconds)
        if not self._progress:
            return
        self._update_study_info()
        seen = set()
        for row in rows:
            seen.add(row.worker)
            desc = f"  {row.worker}: trial {row.trial}"
            task = self._workers.get(row.worker)
            if task is None:
                task = self._progress.add_task(desc, total=row.epochs, info="epochs")
                self._workers[row.worker] = task
            self._progress.update(task, description=desc, completed=row.epoch, total=row.epochs)
        for worker, task in list(self._workers.items()):
            if worker not in seen:
                self._progress.update(task, description=f"  {worker}: between trials")

    def close(self) -> None:
        if self._progress:
            for task in (self._epochs, self._batches):
                if task is not None:
                    self._progress.remove_task(task)
            self._epochs = self._batches = None
            self._progress.stop()
            self._progress = None


def make_observer(mode: str, stream: IO[str] | None = None) -> Any:
    """The observer of a progress mode (``auto``: a display in a terminal, else log lines)."""
    from search.trials import SilentObserver

    stream = stream if stream is not None else sys.stderr
    if mode == "auto":
        mode = "bar" if stream.isatty() else "log"
    if mode == "off":
        return SilentObserver()
    if mode == "log":
        return LogObserver(stream)
    return RichObserver(enabled=True)
