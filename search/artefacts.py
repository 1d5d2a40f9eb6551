"""A study's files: where they live, how checkpoints are written and trusted, what may be deleted.

Every file a study owns lives under one folder named by the study's identity (a UUID the study
database issues once), never by a name a user typed:

    <root>/<study uid>/checkpoints/lineage-00003/epoch-0002/{model.keras,state.json}
    <root>/<study uid>/keras-tuner/...           Keras Tuner's project (Hyperband)
    <root>/<study uid>/models/trial-00005.keras  `retrain`'s default model file

``<root>`` is ``--checkpoint-dir`` when the study was started with one (a folder that workers on
several machines share), else ``<database file>.rnnsearch/`` beside a SQLite file, else
``$XDG_CACHE_HOME/rnnsearch/databases/<host-port-database-hash>/`` for a server database (one
folder per server, database and schema, so that a copy of the database never reaches the
original's files; studies from before keep ``$XDG_CACHE_HOME/rnnsearch/<uid>/``). Folders
are created owner-only (0700, or stricter by umask).
Each folder rnnsearch creates is recorded in the database, and rnnsearch deletes only what it
recorded creating.

Checkpoints belong to a *lineage*: a trial and the copies that continue it after it was cut
(a kill, Ctrl-C). A copy writes into its lineage's folder, so a copy of a copy finds the newest
checkpoint of the whole chain. A checkpoint is written after every epoch, before the epoch is
recorded, atomically (a temporary folder, then a rename). It names its study, lineage, trial,
configuration and data; a restore trusts it only when all of them match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from storage import StudyConfig, StudyDatabase

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
BEST_WEIGHTS_FILE = "best.weights.h5"
CHECKPOINTS = "checkpoints"
KERAS_TUNER = "keras-tuner"
MODELS = "models"
#: Kinds of recorded artefacts.
KIND_CHECKPOINT = "checkpoint"
KIND_KT_PROJECT = "keras-tuner"
KIND_MODEL = "model"


#: Below the cache folder: one folder per database server's database (PostgreSQL).
DATABASES = "databases"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").resolve() / "rnnsearch"


def database_folder(storage_url: str) -> str:
    """A folder name for one server database: its host, port and name, and a hash of the URL
    (options such as ``search_path`` included; driver and password left out), so that a copy of
    the database elsewhere (another server, database or schema) never shares its files."""
    url = make_url(storage_url)
    key = [url.get_backend_name(), url.username, url.host, url.port, url.database]
    key.append(sorted((k, str(v)) for k, v in url.query.items()))
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    readable = "-".join(str(p) for p in (url.host or "local", url.port, url.database) if p)
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', readable)[:60]}-{digest[:12]}"


def artefact_base(storage_url: str, checkpoint_dir: str | None = None) -> Path:
    """The folder holding the identity-named folders of a database's studies."""
    if checkpoint_dir:
        return Path(checkpoint_dir).expanduser().resolve()
    url = make_url(storage_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database).resolve()
        return db.parent / f"{db.name}.rnnsearch"
    return cache_root() / DATABASES / database_folder(storage_url)


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents owner-only (the umask may make them stricter)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):  # mkdir(parents=True) would give parents the default mode
        folder.mkdir(mode=0o700, exist_ok=True)


def config_key(config: dict[str, Any]) -> str:
    """What a model's weights depend on: the configuration less the epoch budget."""
    shape = {k: v for k, v in sorted(config.items()) if k != "epochs"}
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Restored:
    model: Any
    epoch: int
    history: list[dict[str, float]]
    seconds: list[float]
    #: The trial that wrote the checkpoint (the lineage's newest).
    written_by: int


class StudyArtefacts:
    """The files of one study, under ``<base>/<uid>/``; every folder it creates is recorded."""

    def __init__(self, db: StudyDatabase, uid: str, base: Path) -> None:
        self.db = db
        self.uid = uid
        self.root = base / uid
        legacy = cache_root() / uid
        if base.parent == cache_root() / DATABASES and not self.root.exists() and legacy.is_dir():
            # a study of a server database from before each database had a folder of its own
            self.root = legacy

    @classmethod
    def of(cls, db: StudyDatabase, config: StudyConfig) -> StudyArtefacts:
        """The artefacts of a stored study (where its options say they live)."""
        if config.uid is None:  # pragma: no cover - study_config only returns live studies
            raise ValueError(f"study {config.name!r} has no identity")
        return cls(db, config.uid, artefact_base(db.url, config.options.get("checkpoint_dir")))

    def folder(self, kind: str, name: str, *, lineage: int | None = None) -> Path:
        """``<root>/<name>``, created and recorded as an artefact of ``kind``."""
        path = self.root / name
        if not path.is_dir():
            make_private_dirs(path)
            self.db.record_artefact(self.uid, kind, str(path), lineage=lineage)
        return path

    def kt_project(self) -> Path:
        return self.folder(KIND_KT_PROJECT, KERAS_TUNER)

    def default_model_path(self, number: int) -> Path:
        """``retrain``'s default model file for trial ``number``."""
        return self.root / MODELS / f"trial-{number:05d}.keras"

    def save_model(self, model: Any, path: Path, trial_id: int) -> None:
        """Save a model into the study's folder and record it."""
        make_private_dirs(path.parent)
        model.save(path)
        self.db.record_artefact(self.uid, KIND_MODEL, str(path.resolve()), trial_id=trial_id)

    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(self)

    def remove(self, kind: str | None = None, lineages: Iterable[int] | None = None) -> int:
        """Delete recorded artefacts (of ``kind``, of ``lineages``); return how many."""
        wanted = set(lineages) if lineages is not None else None
        gone = []
        for rec in self.db.artefacts(self.uid, kind):
            if wanted is not None and rec.lineage not in wanted:
                continue
            own = self.own_path(rec.path)
            if own is not None:
                remove_path(own)
            gone.append(rec.id)
        self.db.forget_artefacts(gone)
        return len(gone)

    def own_path(self, recorded: str) -> Path | None:
        """Where a recorded artefact is for this database: its path below the study's identity,
        under :attr:`root`. A database records absolute paths where it was used; copied or moved
        (with its ``.rnnsearch`` folder), its records must neither reach the original's files
        nor miss its own. None for a path outside any folder of the study (never deleted)."""
        parts = Path(recorded).parts
        if self.uid not in parts:
            return None
        below = parts[len(parts) - parts[::-1].index(self.uid) :]
        if ".." in below:
            return None
        return self.root.joinpath(*below)

    def remove_empty_folders(self) -> None:
        """Remove the study's folders that are left empty (never a file or a user's folder)."""
        for folder in (self.root / CHECKPOINTS, self.root / MODELS, self.root):
            try:
                folder.rmdir()
            except OSError:
                pass


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass  # already gone, or a folder above it was replaced by a file: nothing of ours left


class CheckpointStore:
    """Per-epoch checkpoints of a study, one folder per lineage."""

    def __init__(self, artefacts: StudyArtefacts) -> None:
        self.artefacts = artefacts
        self.root = artefacts.root / CHECKPOINTS

    def lineage_dir(self, lineage: int) -> Path:
        return self.root / f"lineage-{lineage:05d}"

    def _folder(self, lineage: int) -> Path:
        return self.artefacts.folder(
            KIND_CHECKPOINT, f"{CHECKPOINTS}/lineage-{lineage:05d}", lineage=lineage
        )

    def save(
        self,
        *,
        lineage: int,
        trial: int,
        model: Any,
        epoch: int,
        history: list[dict[str, float]],
        seconds: list[float],
        config: dict[str, Any],
        data_fingerprint: str,
        keep_epoch: int | None = None,
    ) -> None:
        """Write epoch ``epoch``'s checkpoint into a temporary folder, then rename it into place.

        A folder rename is atomic, so a kill -9 leaves the previous epoch's folder or this one.
        Older epochs' folders are removed, except ``keep_epoch``'s (the lineage's best epoch so
        far: ``rnnsearch model`` restores the weights a trial's value was measured on).
        """
        folder = self._folder(lineage)
        tmp = folder / f".epoch-{epoch:04d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        model.save(tmp / MODEL_FILE)
        state = {
            "study_uid": self.artefacts.uid,
            "lineage": lineage,
            "trial": trial,
            "epoch": epoch,
            "config_key": config_key(config),
            "data_fingerprint": data_fingerprint,
            "param_count": int(model.count_params()),
            "history": history,
            "seconds": seconds,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        for f in (tmp / MODEL_FILE, tmp / STATE_FILE):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = folder / f"epoch-{epoch:04d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        keep = folder / f"epoch-{keep_epoch:04d}" if keep_epoch is not None else None
        for old in folder.glob("epoch-*"):
            if old not in (final, keep):
                shutil.rmtree(old, ignore_errors=True)

    def save_best_weights(self, lineage: int, model: Any) -> None:
        """The lineage's best epoch so far, weights only (a Hyperband warm start reads them)."""
        folder = self._folder(lineage)
        tmp = folder / f".{BEST_WEIGHTS_FILE}.tmp.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, folder / BEST_WEIGHTS_FILE)

    def best_weights(self, lineage: int) -> Path | None:
        path = self.lineage_dir(lineage) / BEST_WEIGHTS_FILE
        return path if path.is_file() else None

    def latest_epoch(self, lineage: int) -> int | None:
        folder = self.lineage_dir(lineage)
        epochs = []
        for p in folder.glob("epoch-*") if folder.is_dir() else []:
            try:
                epochs.append(int(p.name.split("-", 1)[1]))
            except ValueError:
                continue
        return max(epochs) if epochs else None

    def load(
        self,
        lineage: int,
        config: dict[str, Any],
        data_fingerprint: str,
        epoch: int | None = None,
    ) -> Restored | None:
        """The lineage's newest checkpoint (or epoch ``epoch``'s) if it is this study's, this
        lineage's, and its model is the one ``config`` builds on this data; else None (the
        trial starts over)."""
        import keras

        if epoch is None:
            epoch = self.latest_epoch(lineage)
        if epoch is None or not (self.lineage_dir(lineage) / f"epoch-{epoch:04d}").is_dir():
            return None
        folder = self.lineage_dir(lineage) / f"epoch-{epoch:04d}"
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        expected = {
            "study_uid": self.artefacts.uid,
            "lineage": lineage,
            "epoch": epoch,
            "config_key": config_key(config),
            "data_fingerprint": data_fingerprint,
        }
        if any(state.get(k) != v for k, v in expected.items()):
            return None
        try:
            model = keras.saving.load_model(folder / MODEL_FILE, compile=True)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint means starting over
            return None
        if int(model.count_params()) != state.get("param_count"):
            return None
        return Restored(
            model,
            epoch,
            list(state["history"]),
            list(state["seconds"]),
            int(state.get("trial", lineage)),
        )

    def remove(self, lineages: Iterable[int]) -> None:
        self.artefacts.remove(KIND_CHECKPOINT, lineages)

    def lineages(self) -> list[int]:
        """Lineages with a recorded checkpoint folder."""
        return sorted(
            {
                rec.lineage
                for rec in self.artefacts.db.artefacts(self.artefacts.uid, KIND_CHECKPOINT)
                if rec.lineage is not None
            }
        )
