"""A Rich progress display of trials and epochs, on stderr so stdout stays parseable."""

from __future__ import annotations

from typing import Any


class RichObserver:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._trials: Any = None
        self._epochs: Any = None
        self._best: float | None = None

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
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()

    def study_ready(self, study: str, finished: int, target: int, resumed: bool) -> None:
        if not self.enabled:
            return
        self._start()
        verb = "continuing" if resumed else "new"
        self._trials = self._progress.add_task(
            f"{study} ({verb}) trials", total=target, completed=finished, info=""
        )

    def trial_started(self, number: int, config: dict[str, Any], epochs: int) -> None:
        if not self._progress:
            return
        if self._epochs is not None:
            self._progress.remove_task(self._epochs)
        desc = f"  trial {number} {config['cell']}-{config['units']}"
        if config.get("bidirectional"):
            desc += " bi"
        self._epochs = self._progress.add_task(desc, total=epochs, info="")

    def epoch_done(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        if not self._progress or self._epochs is None:
            return
        info = f"val_acc {metrics.get('val_accuracy', float('nan')):.4f}"
        self._progress.update(self._epochs, completed=epoch, info=info)

    def trial_finished(self, number: int, state: str, value: float | None, finished: int) -> None:
        if not self._progress:
            return
        if state == "complete" and value is not None:
            self._best = value if self._best is None else max(self._best, value)
        info = f"last: {state}" + (f"; best {self._best:.4f}" if self._best is not None else "")
        self._progress.update(self._trials, completed=finished, info=info)

    def close(self) -> None:
        if self._progress:
            if self._epochs is not None:
                self._progress.remove_task(self._epochs)
                self._epochs = None
            self._progress.stop()
            self._progress = None
