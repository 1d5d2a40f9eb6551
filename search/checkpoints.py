"""Per-epoch checkpoints of a trial: model weights, optimiser state and the epochs' metrics.

A checkpoint is written after every finished epoch, before that epoch is recorded in the study
database, and atomically (a temporary file, then ``os.replace``), so a kill -9 at any moment
leaves either the previous checkpoint or the new one, never a torn file. A trial that is cut
continues from its checkpoint; the metrics inside it replay any epoch the database missed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"


def default_root(storage_url: str, study: str, kind: str = "checkpoints") -> Path:
    """Where a study's files of ``kind`` live: beside a SQLite file, else under ~/.cache/rnnsearch.

    ``kind`` is ``checkpoints`` (ours) or ``kt`` (Keras Tuner's project directory).
    """
    url = make_url(storage_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database).resolve()
        return db.parent / f"{db.stem}.{kind}" / _safe(study)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnsearch"
    host = _safe(f"{url.host or 'local'}-{url.port or ''}-{url.database or ''}")
    return base / kind / host / _safe(study)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(frozen=True)
class Restored:
    model: Any
    epoch: int
    history: list[dict[str, float]]
    seconds: list[float]


class CheckpointStore:
    """Checkpoints of one study, one folder per Optuna trial number."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def trial_dir(self, number: int) -> Path:
        return self.root / f"trial-{number:05d}"

    def save(
        self,
        number: int,
        model: Any,
        epoch: int,
        history: list[dict[str, float]],
        seconds: list[float],
    ) -> None:
        """Write epoch ``epoch``'s checkpoint into a temporary folder, then rename it into place.

        A folder rename is atomic, so a kill -9 leaves the previous epoch's folder or this one.
        """
        folder = self.trial_dir(number)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".epoch-{epoch:04d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save(tmp / MODEL_FILE)
        state = {"epoch": epoch, "history": history, "seconds": seconds}
        (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        for f in (tmp / MODEL_FILE, tmp / STATE_FILE):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = folder / f"epoch-{epoch:04d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in folder.glob("epoch-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    def latest_epoch(self, number: int) -> int | None:
        folder = self.trial_dir(number)
        epochs = []
        for p in folder.glob("epoch-*") if folder.is_dir() else []:
            try:
                epochs.append(int(p.name.split("-", 1)[1]))
            except ValueError:
                continue
        return max(epochs) if epochs else None

    def load(self, number: int) -> Restored | None:
        """The trial's last checkpoint, or None when there is none or it cannot be read."""
        import keras

        epoch = self.latest_epoch(number)
        if epoch is None:
            return None
        folder = self.trial_dir(number) / f"epoch-{epoch:04d}"
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            model = keras.saving.load_model(folder / MODEL_FILE, compile=True)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint means starting over
            return None
        return Restored(model, int(state["epoch"]), list(state["history"]), list(state["seconds"]))

    def remove(self, numbers: Iterable[int]) -> None:
        for n in numbers:
            shutil.rmtree(self.trial_dir(n), ignore_errors=True)

    def numbers(self) -> list[int]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            if p.is_dir() and p.name.startswith("trial-"):
                try:
                    out.append(int(p.name.split("-", 1)[1]))
                except ValueError:
                    continue
        return sorted(out)
