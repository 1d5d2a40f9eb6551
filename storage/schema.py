"""rnnsearch's own tables, beside Optuna's in the same database.

They hold only what Optuna's schema cannot: several metrics per epoch, each trial's resolved
configuration, wall time, data fingerprint and library versions, and each study's configuration.
Rows are keyed by Optuna's ``study_id``/``trial_id``. There are no foreign keys to Optuna's tables,
so ``optuna delete-study`` keeps working; orphaned rows are simply never joined.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Bump with a new entry in storage.migrations.MIGRATIONS whenever the tables below change.
SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "rnnsearch_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class StudyConfigRow(Base):
    __tablename__ = "rnnsearch_studies"

    study_id: Mapped[int] = mapped_column(Integer, primary_key=True)
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
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class EpochMetricRow(Base):
    __tablename__ = "rnnsearch_epochs"
    __table_args__ = (Index("ix_rnnsearch_epochs_study", "study_id"),)

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime)
