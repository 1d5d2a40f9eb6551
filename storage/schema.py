"""rnnsearch's own tables, beside Optuna's in the same database.

They hold only what Optuna's schema cannot: several metrics per epoch, each trial's resolved
configuration, wall time, data fingerprint and library versions, and each study's configuration.
Rows are keyed by Optuna's ``study_id``/``trial_id`` and carry the study's identity, a UUID issued
once per study (``rnnsearch_studies.uid``, also stored as the Optuna study's user attribute
``rnnsearch_uid``). There are no foreign keys to Optuna's tables, so ``optuna delete-study`` keeps
working; since SQLite then reuses the ids, rows whose identity is not a live study's are orphans:
ignored by every read and removed when a study is created or deleted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Bump with a new entry in storage.migrations.MIGRATIONS whenever the tables below change.
SCHEMA_VERSION = 3


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "rnnsearch_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class StudyConfigRow(Base):
    __tablename__ = "rnnsearch_studies"

    study_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The study's identity (a UUID), issued once; artefact folders are named by it.
    uid: Mapped[str | None] = mapped_column(String(36), nullable=True, unique=True)
    study_name: Mapped[str] = mapped_column(String(512), unique=True)
    engine: Mapped[str] = mapped_column(String(32))
    space_name: Mapped[str] = mapped_column(String(256))
    space_json: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_trials: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Trials started or finished that count toward the target; workers claim a slot atomically
    #: before each trial, so N workers never overshoot the target.
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class TrialInfoRow(Base):
    __tablename__ = "rnnsearch_trials"

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(Integer, index=True)
    study_uid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    number: Mapped[int] = mapped_column(Integer)
    engine: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    epochs_trained: Mapped[int] = mapped_column(Integer, default=0)
    data_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    versions: Mapped[dict] = mapped_column(JSON, default=dict)
    param_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    test_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Schema 3: what the trial is judged on besides its objective value (search.objectives):
    #: best validation accuracy and lowest validation loss over its epochs, and what its model
    #: costs, measured on the machine that trained it (search.measure).
    val_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_single_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class EpochMetricRow(Base):
    __tablename__ = "rnnsearch_epochs"
    __table_args__ = (Index("ix_rnnsearch_epochs_study", "study_id"),)

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(Integer)
    study_uid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


class ArtefactRow(Base):
    """A file or folder rnnsearch created for a study; only these are ever deleted by it."""

    __tablename__ = "rnnsearch_artefacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    #: The trial (Optuna trial id) or lineage it belongs to, when it belongs to one.
    trial_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lineage: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
