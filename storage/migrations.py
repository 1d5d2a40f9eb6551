"""Schema migrations of rnnsearch's own tables, applied in order when a database is opened."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, select, text

from storage.errors import DamagedStudyError, StorageError
from storage.schema import SCHEMA_VERSION, Base, MetaRow

UID_ATTR = "rnnsearch_uid"


def _add_identities(conn: Connection) -> None:
    """1 -> 2: every study gets its identity; own rows carry it; artefacts get their table.

    A configuration row whose Optuna study is gone, or now has another name (deleted and its id
    reused), gets no identity: it is an orphan and is ignored from now on.
    """
    for table in ("rnnsearch_studies", "rnnsearch_trials", "rnnsearch_epochs"):
        column = "uid" if table == "rnnsearch_studies" else "study_uid"
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(36)"))
    has_optuna = conn.dialect.has_table(conn, "studies")
    rows = conn.execute(text("SELECT study_id, study_name FROM rnnsearch_studies")).all()
    for sid, name in rows:
        if not has_optuna:
            continue
        live = conn.execute(
            text("SELECT study_name FROM studies WHERE study_id = :sid"), {"sid": sid}
        ).scalar()
        if live != name:
            continue
        uid = str(uuid.uuid4())
        conn.execute(
            text("UPDATE rnnsearch_studies SET uid = :uid WHERE study_id = :sid"),
            {"uid": uid, "sid": sid},
        )
        conn.execute(
            text(
                "INSERT INTO study_user_attributes (study_id, key, value_json) "
                "VALUES (:sid, :key, :value)"
            ),
            {"sid": sid, "key": UID_ATTR, "value": json.dumps(uid)},
        )
        for table in ("rnnsearch_trials", "rnnsearch_epochs"):
            conn.execute(
                text(f"UPDATE {table} SET study_uid = :uid WHERE study_id = :sid"),
                {"uid": uid, "sid": sid},
            )


#: Columns schema 3 adds to rnnsearch_trials: each trial's figures besides its objective value.
TRIAL_FIGURE_COLUMNS = ("val_accuracy", "val_loss", "latency_ms", "latency_single_ms", "model_mb")


def _add_trial_figures(conn: Connection) -> None:
    """2 -> 3: per-trial figures (multi-objective search); earlier trials keep them empty."""
    for column in TRIAL_FIGURE_COLUMNS:
        conn.execute(text(f"ALTER TABLE rnnsearch_trials ADD COLUMN {column} FLOAT"))


#: MIGRATIONS[v] upgrades a database at schema version v to v + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _add_identities, 2: _add_trial_figures}


def current_version(conn: Connection) -> int | None:
    if not conn.dialect.has_table(conn, MetaRow.__tablename__):
        return None
    value = conn.execute(select(MetaRow.value).where(MetaRow.key == "schema_version")).scalar()
    if value is None:
        return None
    try:
        version = int(value)
    except (TypeError, ValueError):
        version = 0
    if version < 1:
        raise DamagedStudyError(
            f"rnnsearch's schema version in the study database is {value!r}, expected a whole "
            "number from 1; the study database is damaged"
        )
    return version


#: PostgreSQL advisory lock held while tables are created or migrated (any number > 0).
SCHEMA_LOCK_KEY = 0x726E6E73  # "rnns"


def lock_schema(conn: Connection) -> None:
    """On PostgreSQL, wait for the schema lock until ``conn``'s transaction ends: processes
    that open a new database at once would otherwise race to create the same tables (PostgreSQL
    refuses the second CREATE TABLE of a name; SQLite's write transactions already queue)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def upgrade(conn: Connection) -> None:
    """Create missing tables and bring an older schema up to SCHEMA_VERSION."""
    lock_schema(conn)
    version = current_version(conn)
    if version is not None and version > SCHEMA_VERSION:
        raise StorageError(
            f"the study database has rnnsearch schema version {version}, newer than this "
            f"rnnsearch knows ({SCHEMA_VERSION}); upgrade rnnsearch to open it"
        )
    while version is not None and version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
    Base.metadata.create_all(conn)
    row = {"key": "schema_version", "value": str(SCHEMA_VERSION)}
    if current_version(conn) is None:
        conn.execute(MetaRow.__table__.insert().values(**row))
    else:
        conn.execute(
            MetaRow.__table__.update()
            .where(MetaRow.key == "schema_version")
            .values(value=row["value"])
        )
