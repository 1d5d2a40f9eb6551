"""Schema migrations of rnnsearch's own tables, applied in order when a database is opened."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, select

from storage.errors import StorageError
from storage.schema import SCHEMA_VERSION, Base, MetaRow

#: MIGRATIONS[v] upgrades a database at schema version v to v + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def current_version(conn: Connection) -> int | None:
    if not conn.dialect.has_table(conn, MetaRow.__tablename__):
        return None
    value = conn.execute(select(MetaRow.value).where(MetaRow.key == "schema_version")).scalar()
    return int(value) if value is not None else None


def upgrade(conn: Connection) -> None:
    """Create missing tables and bring an older schema up to SCHEMA_VERSION."""
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
