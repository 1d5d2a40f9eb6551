"""The study database: Optuna's RDB storage plus rnnsearch's own tables, in one SQL database.

:class:`StudyDatabase` is the only way the rest of rnnsearch touches the database. Its contract:

* It opens SQLite files and PostgreSQL URLs only. It never writes into a file or database that
  is not already a study database, unless that database is empty (a new SQLite file).
* Reads return frozen records (:mod:`storage.records`), never ORM rows or Optuna objects.
* Every SQLAlchemy or Optuna storage error leaves as a :class:`~storage.errors.StorageError`
  whose message names the database and says what went wrong, in one line.
* Heartbeats are on from a study's first trial, so a trial whose process died (kill -9, power
  loss) is detected by the next worker to start a trial and marked failed by Optuna; rnnsearch
  then reports it as ``interrupted``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateTable

from storage.errors import (
    DamagedStudyError,
    NotAStudyDatabaseError,
    ReadOnlyDatabaseError,
    StorageError,
    StorageURLError,
    StudyNotFoundError,
)
from storage.migrations import (
    TRIAL_FIGURE_COLUMNS,
    UID_ATTR,
    current_version,
    lock_schema,
    upgrade,
)
from storage.records import ArtefactRecord, EpochRecord, StudyConfig, StudyRecord, TrialRecord
from storage.schema import (
    SCHEMA_VERSION,
    ArtefactRow,
    Base,
    EpochMetricRow,
    StudyConfigRow,
    TrialInfoRow,
)

if TYPE_CHECKING:
    import optuna

DEFAULT_URL = "sqlite:///rnnsearch.db"
ENV_VAR = "RNNSEARCH_STORAGE"

#: Seconds between heartbeats of a running trial, and how long a silent trial may stay RUNNING.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30
#: How long a SQLite writer waits for a lock before failing (many workers on one file).
SQLITE_BUSY_TIMEOUT_S = 120

# Optuna's own tables, declared with just the columns rnnsearch reads, so that listing 10,000
# trials is one query instead of Optuna's per-trial object assembly. They are never created here.
_optuna_meta = MetaData()
_o_studies = Table(
    "studies", _optuna_meta, Column("study_id", Integer), Column("study_name", String)
)
_o_directions = Table(
    "study_directions",
    _optuna_meta,
    Column("study_id", Integer),
    Column("direction", String),
    Column("objective", Integer),
)
_o_trials = Table(
    "trials",
    _optuna_meta,
    Column("trial_id", Integer),
    Column("number", Integer),
    Column("study_id", Integer),
    Column("state", String),
    Column("datetime_start", DateTime),
    Column("datetime_complete", DateTime),
)
_o_values = Table(
    "trial_values",
    _optuna_meta,
    Column("trial_id", Integer),
    Column("objective", Integer),
    Column("value", Float),
)
_o_params = Table(
    "trial_params",
    _optuna_meta,
    Column("trial_id", Integer),
    Column("param_name", String),
    Column("param_value", Float),
    Column("distribution_json", String),
)
_o_user_attrs = Table(
    "study_user_attributes",
    _optuna_meta,
    Column("study_id", Integer),
    Column("key", String),
    Column("value_json", String),
)
_o_trial_user_attrs = Table(
    "trial_user_attributes",
    _optuna_meta,
    Column("trial_id", Integer),
    Column("key", String),
    Column("value_json", String),
)
_o_heartbeats = Table(
    "trial_heartbeats",
    _optuna_meta,
    Column("trial_id", Integer),
    Column("heartbeat", DateTime),
)
_o_intermediate = Table(
    "trial_intermediate_values",
    _optuna_meta,
    Column("trial_id", Integer),
    Column("step", Integer),
)

_OPTUNA_STATE = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def resolve_url(url: str | None) -> str:
    """The storage URL to use: the argument, else $RNNSEARCH_STORAGE, else ./rnnsearch.db.
    An empty or blank one given on purpose is refused, not read as "the default"."""
    if url is not None:
        if not url.strip():
            raise StorageURLError("--storage: expected a database URL, got an empty string")
        return url
    env = os.environ.get(ENV_VAR)
    if env is not None and not env.strip():
        raise StorageURLError(f"${ENV_VAR} is set but empty: expected a database URL, or unset it")
    return env or DEFAULT_URL


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


_ACCEPTED = "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
#: The drivers rnnsearch installs (Python's sqlite3; psycopg 3 with the postgres extra):
#: another named in a URL (psycopg2, asyncpg) is not installed, or not usable synchronously.
_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}


def check_url(url: str) -> str:
    """Validate a storage URL; raise StorageURLError naming it and what is accepted."""
    shown = _shown_url(url)
    if not url.strip() or any(ord(ch) < 32 for ch in url):
        raise StorageURLError(f"storage URL {shown} is malformed; {_ACCEPTED}")
    try:
        parsed = make_url(url)
        port = parsed.port
    except (ArgumentError, ValueError, TypeError):
        raise StorageURLError(f"storage URL {shown} is malformed; {_ACCEPTED}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StorageURLError(
            f"storage URL {shown} names a {backend!r} database; rnnsearch supports sqlite:///PATH "
            "and postgresql://USER@HOST:PORT/DB"
        )
    driver = parsed.get_driver_name()
    if driver not in _DRIVERS[backend]:
        raise StorageURLError(
            f"storage URL {shown} names the driver {driver!r}; rnnsearch connects to {backend} "
            f"with {' or '.join(repr(d) for d in _DRIVERS[backend])} ({_ACCEPTED})"
        )
    decoded = [parsed.database, parsed.host, parsed.username, parsed.password]
    if any(ord(ch) < 32 for part in decoded if part for ch in str(part)):
        raise StorageURLError(
            f"storage URL {shown}: holds a control character (such as an encoded NUL); {_ACCEPTED}"
        )
    if backend == "sqlite":
        if parsed.host:
            # sqlite://relative.db: the path went into the host part; SQLAlchemy would open an
            # in-memory database and every result would vanish at exit.
            rest = f"/{parsed.database}" if parsed.database else ""
            raise StorageURLError(
                f"storage URL {shown}: a SQLite URL has three slashes before a relative path; "
                f"expected sqlite:///{parsed.host}{rest}"
            )
        if (
            not parsed.database
            or parsed.database == ":memory:"
            or parsed.database.startswith("file:")
        ):
            raise StorageURLError(
                f"storage URL {shown}: expected a SQLite file, sqlite:///PATH; an in-memory "
                "database would lose the study when the command ends"
            )
        if parsed.query:
            raise StorageURLError(
                f"storage URL {shown}: expected no query options in a SQLite URL, "
                f"got {', '.join(sorted(parsed.query))}"
            )
    if backend == "postgresql":
        if port is not None and not 0 < port < 65536:
            raise StorageURLError(
                f"storage URL {shown}: port {port} out of range; expected 1 to 65535"
            )
        _check_postgres_options(shown, parsed.query)
    if backend == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is what the postgres extra installs; SQLAlchemy's bare default is psycopg2.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def _shown_url(url: str) -> str:
    """A refused URL as its message shows it: as typed (not re-encoded), quoted, the password
    as ``***``, cut at 200 characters."""
    masked = _PASSWORD.sub(r"\1***@", url)
    return repr(masked) if len(masked) <= 200 else repr(masked[:197]) + "..."


def _check_postgres_options(shown: str, query: Mapping[str, Any]) -> None:
    """Refuse query options libpq does not know (its own parser names them), before a
    connection is tried; without psycopg installed there is nothing to connect with anyway."""
    if not query:
        return
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import make_conninfo
    except ImportError:
        return
    values = {k: v if isinstance(v, str) else v[-1] for k, v in query.items()}
    try:
        make_conninfo("", **values)
    except ProgrammingError as exc:
        raise StorageURLError(
            f"storage URL {shown}: {str(exc).strip().splitlines()[0]}; expected options libpq "
            "knows, such as ?options=-csearch_path%3DSCHEMA or ?sslmode=require"
        ) from None


#: libpq's (and psycopg's) words for an option value it cannot use, naming the option; libpq
#: checks values only as it connects, before it reaches the server.
_OPTION_VALUE_ERRORS = (
    re.compile(r'invalid (?P<option>\w+) value: "'),
    re.compile(r'invalid integer value ".*" for connection option "(?P<option>\w+)"'),
    re.compile(r"bad value for (?P<option>\w+): "),
)


def _bad_option_value(url: str, exc: BaseException) -> StorageURLError | None:
    """A connection refused for the value of one of the URL's own query options: a usage
    error (exit 2) in one line, not a failed connection; None for any other failure."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    try:
        given = make_url(url).query
    except (ArgumentError, ValueError, TypeError):
        return None
    for pattern in _OPTION_VALUE_ERRORS:
        found = pattern.search(detail)
        if found and found["option"] in given:
            shown = _shown_url(url)
            reason = detail[found.start() :]
            return StorageURLError(
                f"storage URL {shown}: {reason}; expected a value libpq accepts for "
                f"?{found['option']}= (see PostgreSQL's connection parameters)"
            )
    return None


def make_sqlite_writers_wait(engine: Engine) -> None:
    """Start every SQLite transaction with BEGIN IMMEDIATE.

    pysqlite's deferred transactions start as readers and upgrade to writers at the first
    write; when another process wrote in between, SQLite answers "database is locked" at once
    instead of waiting out the busy timeout. Taking the write lock up front makes concurrent
    workers queue on the busy timeout instead. (The recipe of SQLAlchemy's pysqlite docs.)
    """

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


class _BrokenJSON(DamagedStudyError):
    """Stored JSON that does not decode; re-raised by _names_broken_json with its place."""


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise _BrokenJSON(str(exc)) from None


_M = TypeVar("_M", bound=Callable[..., Any])


def _names_broken_json(method: _M) -> _M:
    """Turn broken stored JSON met by a read into one line naming the study and the trial."""

    @functools.wraps(method)
    def wrapper(self: StudyDatabase, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _BrokenJSON:
            study = args[0] if args else kwargs.get("study", kwargs.get("name"))
            raise self._locate_broken_json(study) from None

    return wrapper  # type: ignore[return-value]


def _temp_table_ddl(table: Table, dialect: Any) -> str:
    """CREATE TEMPORARY TABLE for one of rnnsearch's tables: opened read-only, a database that
    lacks it (a plain Optuna database) gets it empty, for one connection only; temporary tables
    shadow the database's names on SQLite and PostgreSQL alike. Without foreign keys: a
    temporary table cannot reference a permanent one (PostgreSQL), and it is never written."""
    ddl = CreateTable(table, include_foreign_key_constraints=[]).compile(dialect=dialect)
    return str(ddl).replace("CREATE TABLE", "CREATE TEMPORARY TABLE", 1)


def _shadow_with_temp_tables(engine: Engine, missing: Sequence[Table]) -> None:
    """PostgreSQL opened read-only: every new connection gets the missing rnnsearch tables as
    empty temporary tables (:func:`_temp_table_ddl`), so that the query commands read a plain
    Optuna database unchanged and leave nothing in it."""
    ddl = [_temp_table_ddl(t, engine.dialect) for t in missing]

    @event.listens_for(engine, "connect")
    def _temp_tables(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            for statement in ddl:
                cur.execute(statement)
        dbapi_conn.commit()

    engine.dispose()  # the connection that looked at the tables has none of them


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "select 1 from sqlite_master where type='table' and name=?", (name,)
    ).fetchone()
    return row is not None


#: ``scheme://user:PASSWORD@``: what a URL that does not parse must not show either.
_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@]*:).*@")


def _display(url: str) -> str:
    """The URL as messages show it: the password, if any, as ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return _PASSWORD.sub(r"\1***@", url)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class StudyDatabase:
    """One study database (see the module docstring for the contract)."""

    def __init__(
        self, url: str | None = None, *, create: bool = True, read_only: bool | None = None
    ) -> None:
        """Open the database at ``url``. ``create=False`` (the query commands) refuses a missing
        or empty database instead of creating one; ``read_only`` (default: ``not create``) opens
        it without writing anything: no schema (a plain Optuna database gets rnnsearch's tables
        as empty TEMP tables, per connection), and no -wal/-shm beside a SQLite file. Only a
        schema written by an older rnnsearch is brought up to date, once, keeping every row."""
        raw = resolve_url(url)
        self.url = check_url(raw)
        self.display_url = _display(raw)
        self.read_only = (not create) if read_only is None else read_only
        path = sqlite_path(self.url)
        self._path = path
        if path is not None:
            self._check_sqlite_file(path, create=create)
            if not self.read_only:
                self._check_writable(path)
        self._storage: optuna.storages.RDBStorage | None = None
        self._lock = threading.Lock()
        self._uids: dict[int, str] = {}
        try:
            self.engine = self._make_engine()
            if path is None:
                tables = set(inspect(self.engine).get_table_names())
                self._check_foreign(tables)
                if not create and not tables:
                    raise StudyNotFoundError(
                        f"{self.display_url}: holds no study (an empty database)"
                    )
                if self.read_only:
                    missing = [t for t in Base.metadata.sorted_tables if t.name not in tables]
                    if missing:
                        _shadow_with_temp_tables(self.engine, missing)
            if self.read_only:
                with self.engine.connect() as conn:
                    version = current_version(conn)
                if version is not None and version > SCHEMA_VERSION:
                    raise StorageError(
                        f"{self.display_url}: rnnsearch schema version {version}, newer than this "
                        f"rnnsearch knows ({SCHEMA_VERSION}); upgrade rnnsearch to open it"
                    )
                if version is not None and version < SCHEMA_VERSION:
                    # Written by an older rnnsearch: its tables are brought up to date once
                    # (a migration keeps every row), then read as usual.
                    writer = create_engine(self.url, poolclass=NullPool)
                    try:
                        with writer.begin() as conn:
                            upgrade(conn)
                    finally:
                        writer.dispose()
            else:
                with self.engine.begin() as conn:
                    upgrade(conn)
        except SQLAlchemyError as exc:
            refused = _bad_option_value(raw, exc)
            if refused is not None:
                raise refused from None
            raise self._error("cannot open", exc) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- opening ---------------------------------------------------------------------------

    def _check_sqlite_file(self, path: Path, *, create: bool) -> None:
        if path.is_dir():
            raise NotAStudyDatabaseError(f"{path}: is a directory, not a study database file")
        if not path.exists():
            if not create:
                raise StudyNotFoundError(
                    f"{path}: no study database here (pass --storage, or set {ENV_VAR})"
                )
            if not path.parent.exists():
                raise StorageURLError(f"{path}: the folder {path.parent} does not exist")
            if not path.parent.is_dir():
                raise StorageURLError(f"{path}: {path.parent} is not a folder")
            # Owner-only (or stricter by umask): trials, data paths and configurations are the
            # user's; SQLite gives its -wal/-shm files the database file's mode.
            try:
                # through a dangling link, its target: O_EXCL on the link itself would fail and
                # leave SQLite to create the file with the default mode
                os.close(os.open(path.resolve(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise StorageURLError(f"{path}: cannot create the study database: {exc}") from None
            return
        if not path.is_file():
            raise NotAStudyDatabaseError(f"{path}: not a regular file; expected a study database")
        if path.stat().st_size == 0:
            if not create:
                raise StudyNotFoundError(f"{path}: holds no study (an empty file)")
            return
        try:
            with path.open("rb") as fh:
                header = fh.read(16)
        except OSError as exc:
            raise NotAStudyDatabaseError(
                f"{path}: cannot read the study database: {exc.strerror or exc}"
            ) from None
        if header != b"SQLite format 3\x00":
            raise NotAStudyDatabaseError(
                f"{path}: not a study database (not an SQLite file); expected a file written by "
                "rnnsearch or Optuna"
            )
        # Look read-only first: opening through the engine would switch the file to WAL mode.
        try:
            with closing(self._connect_read_only(path)) as conn:
                rows = conn.execute("select name from sqlite_master where type='table'").fetchall()
        except sqlite3.DatabaseError as exc:
            raise NotAStudyDatabaseError(f"{path}: not a readable SQLite database: {exc}") from None
        tables = {name for (name,) in rows}
        self._check_foreign(tables)
        if not create and not tables:
            raise StudyNotFoundError(f"{path}: holds no study (an empty SQLite database)")

    @staticmethod
    def _check_writable(path: Path) -> None:
        """Refuse, before SQLite touches anything, a file or folder this process cannot write:
        SQLite would fail at the first write ("attempt to write a readonly database") after
        leaving -wal/-shm files beside the database that block later opens."""
        folder = path.parent if str(path.parent) else Path(".")
        if path.exists() and not os.access(path, os.W_OK):
            raise ReadOnlyDatabaseError(
                f"{path}: the study database is read-only (mode {path.stat().st_mode & 0o777:o}); "
                "this command writes to it (make it writable, or work on a copy)"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ReadOnlyDatabaseError(
                f"{path}: the folder {folder} is read-only; SQLite writes its journal beside the "
                "study database (make the folder writable, or work on a copy elsewhere)"
            )

    @staticmethod
    def _connect_read_only(path: Path) -> sqlite3.Connection:
        """A connection that writes nothing into or beside the file.

        Where the file and its folder are writable, an ordinary connection with query_only on:
        SQLite removes any -wal/-shm it creates when the last connection closes (a read-only
        connection would leave them behind). Otherwise a ``mode=ro`` connection, immutable when
        no -wal file shows a writer (a read-only file cannot be written while we read it).
        """
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        if writable:
            conn = sqlite3.connect(
                str(path), timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False
            )
        else:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            if not Path(f"{path}-wal").exists():
                uri += "&immutable=1"
            conn = sqlite3.connect(
                uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False
            )
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _make_engine(self) -> Engine:
        if self.url.startswith("sqlite") and self.read_only and self._path is not None:
            path = self._path

            def _creator() -> sqlite3.Connection:
                conn = self._connect_read_only(path)
                missing = [t for t in Base.metadata.sorted_tables if not _has_table(conn, t.name)]
                if missing:
                    # A plain Optuna database: rnnsearch's tables, empty, for this connection
                    # only (TEMP tables shadow the file's names), so every query works unchanged.
                    conn.execute("PRAGMA query_only=OFF")
                    for table in missing:
                        conn.execute(_temp_table_ddl(table, sqlite_dialect.dialect()))
                    conn.execute("PRAGMA query_only=ON")
                return conn

            return create_engine(
                "sqlite://", creator=_creator, poolclass=NullPool, json_deserializer=_load_json
            )
        if self.url.startswith("sqlite"):
            engine = create_engine(
                self.url,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
                json_deserializer=_load_json,
            )

            make_sqlite_writers_wait(engine)

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                # WAL lets readers (best, report, the dashboard) run while a search writes.
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
                cur.close()

            return engine
        return create_engine(self.url, pool_pre_ping=True, json_deserializer=_load_json)

    def _check_foreign(self, tables: set[str]) -> None:
        """Refuse databases that hold tables but are not Optuna/rnnsearch study databases."""
        if not tables:
            return
        if "version_info" in tables and "studies" in tables:
            return
        if tables <= set(Base.metadata.tables):
            return
        shown = ", ".join(sorted(tables)[:5])
        raise NotAStudyDatabaseError(
            f"{self.display_url}: not a study database (it holds other tables: {shown}); "
            "expected a database written by rnnsearch or Optuna, or an empty one"
        )

    @property
    def optuna_storage(self) -> optuna.storages.RDBStorage:
        """Optuna's RDB storage on the same database, heartbeat on (created on first use)."""
        with self._lock:
            if self._storage is None:
                self._storage = self._make_optuna_storage()
            return self._storage

    def _make_optuna_storage(self) -> optuna.storages.RDBStorage:
        import optuna

        engine_kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            engine_kwargs["pool_pre_ping"] = True
        try:
            # Optuna creates its tables when its storage opens: under the schema lock, as
            # rnnsearch's own, so that processes opening a new database at once do not race
            with self._schema_locked():
                storage = optuna.storages.RDBStorage(
                    self.url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                )
        except (SQLAlchemyError, RuntimeError, ValueError) as exc:
            raise self._error("cannot open Optuna's tables in", exc) from None
        if self.url.startswith("sqlite"):
            make_sqlite_writers_wait(storage.engine)
        return storage

    @contextmanager
    def _schema_locked(self) -> Iterator[None]:
        """PostgreSQL: hold the schema lock (storage.migrations.lock_schema) meanwhile. SQLite
        needs none, and a transaction held open here would block the writer inside."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.begin() as conn:
            lock_schema(conn)
            yield

    def dispose(self) -> None:
        self.engine.dispose()
        if self._storage is not None:
            self._storage.remove_session()
            self._storage.engine.dispose()

    # -- error handling --------------------------------------------------------------------

    def _error(self, doing: str, exc: BaseException) -> StorageError:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if "locked" in detail:
            return StorageError(f"{self.display_url}: database is locked ({doing}): {detail}")
        return StorageError(f"{self.display_url}: {doing} the study database: {detail}")

    @contextmanager
    def session(self, doing: str = "cannot use") -> Iterator[Session]:
        """A transaction; commits on success, rolls back and raises StorageError on failure."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise self._error(doing, exc) from None
        finally:
            session.close()

    def _locate_broken_json(self, study: str | None) -> DamagedStudyError:
        """Find the stored JSON that does not decode: the study's record, or a trial's."""
        checks = [
            (StudyConfigRow, ("data", "options"), None),
            (TrialInfoRow, ("config", "versions", "extra"), TrialInfoRow.number),
        ]
        with self.session("cannot read") as s:
            names = dict(s.execute(select(_o_studies.c.study_id, _o_studies.c.study_name)).all())
            wanted = {sid for sid, n in names.items() if study is None or n == study}
            for row_cls, columns, number_col in checks:
                cols = [type_coerce(getattr(row_cls, c), Text) for c in columns]
                extra = [number_col] if number_col is not None else []
                for sid, *rest in s.execute(select(row_cls.study_id, *extra, *cols)):
                    if sid not in wanted:
                        continue
                    number = rest.pop(0) if number_col is not None else None
                    for column, raw in zip(columns, rest, strict=True):
                        if raw is None:
                            continue
                        try:
                            json.loads(raw)
                        except ValueError as exc:
                            place = f"study {names[sid]!r}"
                            if number is not None:
                                place += f", trial {number}"
                            return DamagedStudyError(
                                f"{self.display_url}: {place}: the stored {column} is not valid "
                                f"JSON ({exc}); the study database is damaged"
                            )
        where = f"study {study!r}" if study is not None else "a study"
        return DamagedStudyError(
            f"{self.display_url}: {where}: stored JSON is not valid; the study database is damaged"
        )

    # -- studies ---------------------------------------------------------------------------

    def study_id(self, name: str) -> int:
        """Optuna's id of the study, or StudyNotFoundError naming the known studies."""
        if not self.has_optuna_tables():
            raise StudyNotFoundError(
                f"no study named {name!r} in {self.display_url}; it holds no study"
            )
        with self.session("cannot read") as s:
            sid = s.execute(
                select(_o_studies.c.study_id).where(_o_studies.c.study_name == name)
            ).scalar()
            if sid is None:
                known = s.execute(select(_o_studies.c.study_name).order_by(_o_studies.c.study_id))
                names = [n for (n,) in known]
        if sid is None:
            hint = f"; studies here: {', '.join(names[:10])}" if names else "; it holds no study"
            raise StudyNotFoundError(f"no study named {name!r} in {self.display_url}{hint}")
        return int(sid)

    def has_optuna_tables(self) -> bool:
        return "studies" in set(inspect(self.engine).get_table_names())

    # -- identity --------------------------------------------------------------------------

    def _live_uid(self, s: Session, study_id: int) -> str | None:
        """The identity the Optuna study ``study_id`` carries, or None (not rnnsearch's)."""
        raw = s.execute(
            select(_o_user_attrs.c.value_json).where(
                _o_user_attrs.c.study_id == study_id, _o_user_attrs.c.key == UID_ATTR
            )
        ).scalar()
        try:
            value = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return value if isinstance(value, str) else None

    def _study_uid(self, study_id: int) -> str | None:
        """The live identity of a study (cached: it never changes while the study exists)."""
        if study_id not in self._uids:
            with self.session("cannot read") as s:
                uid = self._live_uid(s, study_id)
            if uid is None:
                return None
            self._uids[study_id] = uid
        return self._uids[study_id]

    @staticmethod
    def _uid_is(column: Any, uid: str | None) -> Any:
        return column.is_(None) if uid is None else column == uid

    def claim_study_uid(self, study_id: int, proposed: str) -> str:
        """The identity of the Optuna study ``study_id``: the one it carries, else ``proposed``,
        written now. Two processes starting one study at once get the same answer: the study's
        row is locked (PostgreSQL; a SQLite write transaction holds the database from its
        start) while its identity is read and, if it has none, written."""
        with self.session("cannot write") as s:
            s.execute(
                select(_o_studies.c.study_id)
                .where(_o_studies.c.study_id == study_id)
                .with_for_update()
            )
            uid = self._live_uid(s, study_id)
            if uid is None:
                uid = proposed
                attr = (_o_user_attrs.c.study_id == study_id) & (_o_user_attrs.c.key == UID_ATTR)
                s.execute(delete(_o_user_attrs).where(attr))  # a value that is no identity
                s.execute(
                    insert(_o_user_attrs).values(
                        study_id=study_id, key=UID_ATTR, value_json=json.dumps(uid)
                    )
                )
                # Rows written before the study had its identity (plain Optuna's, tests) adopt it.
                for table in (TrialInfoRow, EpochMetricRow):
                    s.execute(
                        update(table)
                        .where(table.study_id == study_id, table.study_uid.is_(None))
                        .values(study_uid=uid)
                    )
        self._uids[study_id] = uid
        return uid

    def save_study_config(self, config: StudyConfig) -> StudyConfig:
        """Store a study's configuration; a new study gets its identity here (returned; see
        :meth:`claim_study_uid`). Rows left by a deleted study whose id the database reused
        are purged first.
        """
        uid = self.claim_study_uid(config.study_id, config.uid or str(uuid.uuid4()))
        with self.session("cannot write") as s:
            row = s.get(StudyConfigRow, config.study_id)
            if row is not None and (row.uid is None or row.uid != uid):
                s.delete(row)  # an orphan of a deleted study that had this id
        self.purge_orphans()
        with self.session("cannot write") as s:
            row = s.get(StudyConfigRow, config.study_id)
            if row is None:
                row = StudyConfigRow(study_id=config.study_id, uid=uid, created_at=_utcnow())
                s.add(row)
            row.study_name = config.name
            row.engine = config.engine
            row.space_name = config.space_name
            row.space_json = config.space_json
            row.data = dict(config.data)
            row.seed = config.seed
            row.target_trials = config.target_trials
            row.options = dict(config.options)
            created = row.created_at
        return StudyConfig(
            name=config.name,
            study_id=config.study_id,
            engine=config.engine,
            space_name=config.space_name,
            space_json=config.space_json,
            data=dict(config.data),
            seed=config.seed,
            target_trials=config.target_trials,
            options=dict(config.options),
            created_at=created,
            uid=uid,
        )

    def _damaged_field(
        self, study: str, number: Any, name: str, value: Any, expected: str = "a number"
    ) -> DamagedStudyError:
        """One line naming a trial's stored field that is not what it should be."""
        return DamagedStudyError(
            f"{self.display_url}: study {study!r}, trial {number}: the stored {name} is "
            f"{str(value)[:40]!r}, expected {expected}; the study database is damaged"
        )

    def _check_numbers(self, row: Any, names: Sequence[str], study: str, number: Any) -> None:
        """SQLite keeps text a hand edit writes into a number column: refuse it by name."""
        for name in names:
            value = getattr(row, name)
            if value is not None and not _is_number(value):
                raise self._damaged_field(study, number, name, value)

    def _check_stored_numbers(self, info: TrialInfoRow, study: str, number: int) -> None:
        names = (
            *TRIAL_FIGURE_COLUMNS,
            "test_loss",
            "test_accuracy",
            "wall_seconds",
            "epochs_trained",
            "param_count",
        )
        self._check_numbers(info, names, study, number)

    @_names_broken_json
    def study_config(self, name: str) -> StudyConfig | None:
        """What the study was started with, or None for a study rnnsearch did not create."""
        sid = self.study_id(name)
        with self.session("cannot read") as s:
            row = s.get(StudyConfigRow, sid)
            if row is None or row.uid is None or row.uid != self._live_uid(s, sid):
                return None  # none, or an orphan of a deleted study whose id was reused
            for field, value, kind, expected in (
                ("data", row.data, dict, "a JSON object"),
                ("options", row.options, dict, "a JSON object"),
                ("seed", row.seed, int, "an integer"),
                ("target_trials", row.target_trials, int, "an integer"),
            ):
                # SQLite keeps whatever a hand edit wrote, whatever the column's type
                if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                    raise DamagedStudyError(
                        f"{self.display_url}: study {name!r}: the stored {field} is "
                        f"{json.dumps(value)[:60]}, expected {expected}; the study database "
                        "is damaged"
                    )
            return StudyConfig(
                name=row.study_name,
                study_id=row.study_id,
                engine=row.engine,
                space_name=row.space_name,
                space_json=row.space_json,
                data=dict(row.data or {}),
                seed=row.seed,
                target_trials=row.target_trials,
                options=dict(row.options or {}),
                created_at=row.created_at,
                uid=row.uid,
            )

    def purge_orphans(self) -> list[ArtefactRecord]:
        """Delete rnnsearch rows of studies that no longer exist (deleted by Optuna's CLI, say).

        Returns the artefacts those studies had recorded, for the caller to remove; their rows
        are deleted with the rest.
        """
        if not self.has_optuna_tables():
            return []
        with self.session("cannot write") as s:
            live = {
                sid: self._live_uid(s, sid)
                for (sid,) in s.execute(select(_o_studies.c.study_id)).all()
            }
            live_uids = {u for u in live.values() if u is not None}
            for row in s.scalars(select(StudyConfigRow)).all():
                if row.uid is None or live.get(row.study_id) != row.uid:
                    s.delete(row)
            for table in (TrialInfoRow, EpochMetricRow):
                s.execute(
                    delete(table).where(
                        table.study_uid.is_not(None), table.study_uid.not_in(live_uids or {""})
                    )
                )
                # Rows without an identity belong to studies rnnsearch did not create; they
                # are orphans once their study id is gone.
                s.execute(
                    delete(table).where(
                        table.study_uid.is_(None), table.study_id.not_in(list(live) or [-1])
                    )
                )
            gone = s.scalars(
                select(ArtefactRow).where(ArtefactRow.study_uid.not_in(live_uids or {""}))
            ).all()
            records = [_artefact(r) for r in gone]
            for r in gone:
                s.delete(r)
        return records

    def delete_study(self, name: str) -> None:
        """Delete the study: Optuna's rows and rnnsearch's (artefact records included)."""
        sid = self.study_id(name)
        uid = self._study_uid(sid)
        try:
            self.optuna_storage.delete_study(sid)
        except SQLAlchemyError as exc:
            raise self._error("cannot delete a study from", exc) from None
        self._uids.pop(sid, None)
        with self.session("cannot write") as s:
            s.execute(delete(StudyConfigRow).where(StudyConfigRow.study_id == sid))
            for table in (TrialInfoRow, EpochMetricRow):
                s.execute(
                    delete(table).where(table.study_id == sid, self._uid_is(table.study_uid, uid))
                )
            if uid is not None:
                s.execute(delete(ArtefactRow).where(ArtefactRow.study_uid == uid))

    # -- artefacts -------------------------------------------------------------------------

    def record_artefact(
        self,
        study_uid: str,
        kind: str,
        path: str,
        *,
        trial_id: int | None = None,
        lineage: int | None = None,
    ) -> ArtefactRecord:
        """Record a file or folder created for a study (once per path and kind)."""
        with self.session("cannot write") as s:
            row = s.scalars(
                select(ArtefactRow).where(
                    ArtefactRow.study_uid == study_uid,
                    ArtefactRow.kind == kind,
                    ArtefactRow.path == path,
                )
            ).first()
            if row is None:
                row = ArtefactRow(
                    study_uid=study_uid,
                    kind=kind,
                    path=path,
                    trial_id=trial_id,
                    lineage=lineage,
                    created_at=_utcnow(),
                )
                s.add(row)
                s.flush()
            return _artefact(row)

    def artefacts(self, study_uid: str, kind: str | None = None) -> list[ArtefactRecord]:
        with self.session("cannot read") as s:
            query = select(ArtefactRow).where(ArtefactRow.study_uid == study_uid)
            if kind is not None:
                query = query.where(ArtefactRow.kind == kind)
            return [_artefact(r) for r in s.scalars(query.order_by(ArtefactRow.id)).all()]

    def forget_artefacts(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.session("cannot write") as s:
            s.execute(delete(ArtefactRow).where(ArtefactRow.id.in_(list(ids))))

    def claim_trial_slot(self, study_id: int) -> bool:
        """Atomically take one of the study's remaining trial slots; False when none is left.

        One UPDATE statement with the bound in its WHERE clause: SQLite and PostgreSQL both
        apply it atomically, so concurrent workers cannot take more slots than the target.
        """
        with self.session("cannot write") as s:
            result = s.execute(
                update(StudyConfigRow)
                .where(
                    StudyConfigRow.study_id == study_id,
                    StudyConfigRow.target_trials.is_not(None),
                    StudyConfigRow.claimed < StudyConfigRow.target_trials,
                )
                .values(claimed=StudyConfigRow.claimed + 1)
            )
            return result.rowcount == 1

    def release_trial_slot(self, study_id: int) -> None:
        """Give back a slot whose trial was interrupted: it will run again and count then."""
        with self.session("cannot write") as s:
            s.execute(
                update(StudyConfigRow)
                .where(StudyConfigRow.study_id == study_id, StudyConfigRow.claimed > 0)
                .values(claimed=StudyConfigRow.claimed - 1)
            )

    def set_claimed(self, study_id: int, claimed: int) -> None:
        with self.session("cannot write") as s:
            s.execute(
                update(StudyConfigRow)
                .where(StudyConfigRow.study_id == study_id)
                .values(claimed=claimed)
            )

    def set_target_trials(self, study_id: int, target: int) -> None:
        with self.session("cannot write") as s:
            row = s.get(StudyConfigRow, study_id)
            if row is None:
                raise StudyNotFoundError(f"study id {study_id} has no rnnsearch configuration")
            row.target_trials = target

    def state_counts(self, study: str) -> dict[str, int]:
        """Trials per rnnsearch state (interrupted split from failed), by SQL counts alone."""
        sid = self.study_id(study)
        uid = self._study_uid(sid)
        with self.session("cannot read") as s:
            rows = s.execute(
                select(cast(_o_trials.c.state, String), func.count())
                .where(_o_trials.c.study_id == sid)
                .group_by(_o_trials.c.state)
            ).all()
            interrupted = s.execute(
                select(func.count()).where(
                    TrialInfoRow.study_id == sid,
                    TrialInfoRow.status == "interrupted",
                    self._uid_is(TrialInfoRow.study_uid, uid),
                )
            ).scalar_one()
        counts = {_OPTUNA_STATE.get(str(st), str(st).lower()): n for st, n in rows}
        moved = min(interrupted, counts.get("failed", 0))
        if moved:
            counts["failed"] -= moved
            counts["interrupted"] = moved
        return counts

    def stale_running_trial_ids(self, study: str) -> set[int]:
        """Running trials whose heartbeat is older than the grace period (their process died
        or lost the database): Optuna's own rule (``RDBStorage._get_stale_trial_ids``), read
        without Optuna's storage, so that a read-only connection can ask. A running trial with
        no heartbeat yet is not stale."""
        sid = self.study_id(study)
        with self.session("cannot read") as s:
            now = s.execute(select(func.now())).scalar_one()
            rows = s.execute(
                select(_o_trials.c.trial_id, _o_heartbeats.c.heartbeat)
                .join(_o_heartbeats, _o_heartbeats.c.trial_id == _o_trials.c.trial_id)
                .where(_o_trials.c.study_id == sid, cast(_o_trials.c.state, String) == "RUNNING")
            ).all()
        if isinstance(now, str):  # SQLite's CURRENT_TIMESTAMP comes back as text
            now = datetime.fromisoformat(now)
        now = now.replace(tzinfo=None)
        grace = timedelta(seconds=GRACE_PERIOD)
        return {trial_id for trial_id, beat in rows if now - beat > grace}

    def spent_seconds(self, study: str) -> float:
        """What a study's ``--time-budget`` counts: the summed duration of its trials that are
        not running (finished, interrupted or failed; a running trial adds its own time so far).
        A narrow query: a running search asks after every epoch."""
        sid = self.study_id(study)
        uid = self._study_uid(sid)
        with self.session("cannot read") as s:
            rows = s.execute(
                select(
                    TrialInfoRow.wall_seconds,
                    _o_trials.c.datetime_start,
                    _o_trials.c.datetime_complete,
                )
                .select_from(_o_trials)
                .outerjoin(
                    TrialInfoRow,
                    and_(
                        TrialInfoRow.trial_id == _o_trials.c.trial_id,
                        TrialInfoRow.study_id == sid,
                        self._uid_is(TrialInfoRow.study_uid, uid),
                    ),
                )
                .where(_o_trials.c.study_id == sid, cast(_o_trials.c.state, String) != "RUNNING")
            ).all()
        return sum(_trial_seconds(*row) or 0.0 for row in rows)

    @_names_broken_json
    def studies(self) -> list[StudyRecord]:
        if not self.has_optuna_tables():
            return []
        with self.session("cannot read") as s:
            studies = s.execute(
                select(_o_studies.c.study_id, _o_studies.c.study_name).order_by(
                    _o_studies.c.study_id
                )
            ).all()
            directions = dict(
                s.execute(
                    select(_o_directions.c.study_id, _o_directions.c.direction).where(
                        _o_directions.c.objective == 0
                    )
                ).all()
            )
            configs = {
                r.study_id: r
                for r in s.scalars(select(StudyConfigRow))
                if r.uid is not None and r.uid == self._live_uid(s, r.study_id)
            }
            counts: dict[int, dict[str, int]] = {}
            for sid, state, n in s.execute(
                select(_o_trials.c.study_id, _o_trials.c.state, func.count()).group_by(
                    _o_trials.c.study_id, _o_trials.c.state
                )
            ):
                counts.setdefault(sid, {})[_OPTUNA_STATE.get(str(state), str(state).lower())] = n
            interrupted: dict[int, int] = {}
            for sid, uid, n in s.execute(
                select(TrialInfoRow.study_id, TrialInfoRow.study_uid, func.count())
                .where(TrialInfoRow.status == "interrupted")
                .group_by(TrialInfoRow.study_id, TrialInfoRow.study_uid)
            ):
                if uid == self._live_uid(s, sid):  # rows of a deleted study are not counted
                    interrupted[sid] = interrupted.get(sid, 0) + n
        out = []
        for sid, name in studies:
            direction = str(directions.get(sid, "MAXIMIZE")).lower()
            c = {k: 0 for k in ("complete", "pruned", "failed", "running", "interrupted")}
            c.update(counts.get(sid, {}))
            moved = min(interrupted.get(sid, 0), c["failed"])
            c["failed"] -= moved
            c["interrupted"] += moved
            cfg = configs.get(sid)
            best = self._best_value(sid, direction)
            out.append(
                StudyRecord(
                    name=name,
                    study_id=sid,
                    engine=cfg.engine if cfg else None,
                    space=cfg.space_name if cfg else None,
                    # a damaged record lists as unknown data; reading the study says what broke
                    data=cfg.data.get("source") if cfg and isinstance(cfg.data, dict) else None,
                    direction=direction,
                    counts=c,
                    best_value=best,
                    target_trials=cfg.target_trials if cfg else None,
                    created_at=cfg.created_at if cfg else None,
                    limit=(cfg.data or {}).get("limit") if cfg else None,
                    seed=cfg.seed if cfg else None,
                )
            )
        return out

    def _best_value(self, study_id: int, direction: str) -> float | None:
        agg = func.max if direction == "maximize" else func.min
        with self.session("cannot read") as s:
            return s.execute(
                select(agg(_o_values.c.value))
                .join(_o_trials, _o_trials.c.trial_id == _o_values.c.trial_id)
                .where(
                    _o_trials.c.study_id == study_id,
                    cast(_o_trials.c.state, String) == "COMPLETE",
                    # A multi-objective study's best value is its first objective's.
                    _o_values.c.objective == 0,
                )
            ).scalar()

    # -- trials ----------------------------------------------------------------------------

    def record_trial_info(
        self,
        *,
        trial_id: int,
        study_id: int,
        number: int,
        engine: str,
        config: Mapping[str, Any],
        status: str,
        reason: str | None = None,
        wall_seconds: float | None = None,
        data_fingerprint: str | None = None,
        versions: Mapping[str, str] | None = None,
        param_count: int | None = None,
        extra: Mapping[str, Any] | None = None,
        figures: Mapping[str, float | None] | None = None,
    ) -> None:
        """Create or update a trial's rnnsearch row; fields given as None keep their value.

        ``figures`` sets the per-trial figures (``TRIAL_FIGURE_COLUMNS``: val_accuracy,
        val_loss, latency_ms, latency_single_ms, model_mb) it names.
        """
        unknown = set(figures or {}) - set(TRIAL_FIGURE_COLUMNS)
        if unknown:
            raise StorageError(f"unknown trial figures {sorted(unknown)}")
        uid = self._study_uid(study_id)
        with self.session("cannot write") as s:
            row = s.get(TrialInfoRow, trial_id)
            if row is not None and (row.study_id != study_id or row.study_uid != uid):
                # Left by a deleted study whose trial id the database reused: not this trial's.
                s.execute(delete(EpochMetricRow).where(EpochMetricRow.trial_id == trial_id))
                s.delete(row)
                s.flush()
                row = None
            if row is None:
                row = TrialInfoRow(
                    trial_id=trial_id,
                    study_id=study_id,
                    study_uid=uid,
                    number=number,
                    engine=engine,
                    config=dict(config),
                    status=status,
                    epochs_trained=0,
                    versions={},
                    extra={},
                    updated_at=_utcnow(),
                )
                s.add(row)
            row.config = dict(config)
            row.status = status
            row.updated_at = _utcnow()
            if reason is not None:
                row.reason = reason
            if wall_seconds is not None:
                row.wall_seconds = wall_seconds
            if data_fingerprint is not None:
                row.data_fingerprint = data_fingerprint
            if versions is not None:
                row.versions = dict(versions)
            if param_count is not None:
                row.param_count = param_count
            if extra is not None:
                row.extra = {**(row.extra or {}), **extra}
            for name, value in (figures or {}).items():
                if value is not None:
                    setattr(row, name, float(value))
            row.epochs_trained = s.execute(
                select(func.count()).where(EpochMetricRow.trial_id == trial_id)
            ).scalar_one()

    def record_epoch(
        self,
        *,
        trial_id: int,
        study_id: int,
        epoch: int,
        metrics: Mapping[str, float],
        seconds: float | None,
    ) -> None:
        """Store one finished epoch (1-based); recording the same epoch again overwrites it."""

        def num(key: str) -> float | None:
            v = metrics.get(key)
            return None if v is None else float(v)

        uid = self._study_uid(study_id)
        with self.session("cannot write") as s:
            row = s.get(EpochMetricRow, (trial_id, epoch))
            if row is None:
                row = EpochMetricRow(trial_id=trial_id, epoch=epoch, study_id=study_id)
                s.add(row)
            row.study_uid = uid
            row.loss = num("loss")
            row.accuracy = num("accuracy")
            row.val_loss = num("val_loss")
            row.val_accuracy = num("val_accuracy")
            row.seconds = seconds
            row.recorded_at = _utcnow()
            s.flush()
            info = s.get(TrialInfoRow, trial_id)
            if info is not None:
                info.epochs_trained = s.execute(
                    select(func.count()).where(EpochMetricRow.trial_id == trial_id)
                ).scalar_one()
                info.updated_at = _utcnow()

    def record_test_metrics(self, trial_id: int, loss: float, accuracy: float) -> None:
        with self.session("cannot write") as s:
            row = s.get(TrialInfoRow, trial_id)
            if row is None:
                raise StorageError(
                    f"trial id {trial_id} has no rnnsearch row to record test metrics"
                )
            row.test_loss = float(loss)
            row.test_accuracy = float(accuracy)
            # Also as Optuna user attributes (optuna-dashboard, `optuna trials`); Optuna's API
            # refuses to change a finished trial.
            self._write_user_attrs(
                s,
                trial_id,
                {"test_loss": round(float(loss), 6), "test_accuracy": round(float(accuracy), 6)},
            )

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Set Optuna user attributes of a trial, all in one transaction (Optuna's API writes
        one attribute per transaction: 5 per epoch cost 90 ms on a busy 2-core machine)."""
        with self.session("cannot write") as s:
            self._write_user_attrs(s, trial_id, attrs)

    @staticmethod
    def _write_user_attrs(s: Session, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Optuna's ``trial_user_attributes`` rows (key, JSON value), replaced key by key."""
        if not attrs:
            return
        table = _o_trial_user_attrs
        s.execute(
            delete(table).where(and_(table.c.trial_id == trial_id, table.c.key.in_(list(attrs))))
        )
        s.execute(
            table.insert(),
            [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in attrs.items()
            ],
        )

    def epochs(self, trial_id: int) -> list[EpochRecord]:
        with self.session("cannot read") as s:
            rows = s.scalars(
                select(EpochMetricRow)
                .where(EpochMetricRow.trial_id == trial_id)
                .order_by(EpochMetricRow.epoch)
            ).all()
            return [
                EpochRecord(r.epoch, r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.seconds)
                for r in rows
            ]

    def epochs_by_trial(self, study_id: int) -> dict[int, list[EpochRecord]]:
        uid = self._study_uid(study_id)
        with self.session("cannot read") as s:
            rows = s.scalars(
                select(EpochMetricRow)
                .where(
                    EpochMetricRow.study_id == study_id,
                    self._uid_is(EpochMetricRow.study_uid, uid),
                )
                .order_by(EpochMetricRow.trial_id, EpochMetricRow.epoch)
            ).all()
        out: dict[int, list[EpochRecord]] = {}
        for r in rows:
            out.setdefault(r.trial_id, []).append(
                EpochRecord(r.epoch, r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.seconds)
            )
        return out

    @_names_broken_json
    def trials(
        self,
        study: str,
        states: Sequence[str] | None = None,
        *,
        trial_ids: Sequence[int] | None = None,
    ) -> list[TrialRecord]:
        """Every trial of the study (or those of ``trial_ids``), in trial-number order."""
        sid = self.study_id(study)
        uid = self._study_uid(sid)
        scope = _o_trials.c.study_id == sid
        if trial_ids is not None:
            scope = and_(scope, _o_trials.c.trial_id.in_(list(trial_ids)))
        with self.session("cannot read") as s:
            trows = s.execute(
                select(
                    _o_trials.c.trial_id,
                    _o_trials.c.number,
                    _o_trials.c.state,
                    _o_trials.c.datetime_start,
                    _o_trials.c.datetime_complete,
                )
                .where(scope)
                .order_by(_o_trials.c.number)
            ).all()
            numbers = {tid: number for tid, number, *_ in trows}
            objective_values: dict[int, dict[int, float]] = {}
            for tid, objective, value in s.execute(
                select(_o_values.c.trial_id, _o_values.c.objective, _o_values.c.value)
                .join(_o_trials, _o_trials.c.trial_id == _o_values.c.trial_id)
                .where(scope)
            ):
                if value is not None and not _is_number(value):
                    what = "value" if objective == 0 else f"value of objective {objective}"
                    raise self._damaged_field(study, numbers.get(tid, "?"), what, value)
                objective_values.setdefault(tid, {})[int(objective)] = value
            values = {tid: v.get(0) for tid, v in objective_values.items()}
            params: dict[int, dict[str, Any]] = {}
            for tid, pname, pval, dist in s.execute(
                select(
                    _o_params.c.trial_id,
                    _o_params.c.param_name,
                    _o_params.c.param_value,
                    _o_params.c.distribution_json,
                )
                .join(_o_trials, _o_trials.c.trial_id == _o_params.c.trial_id)
                .where(scope)
            ):
                try:
                    params.setdefault(tid, {})[pname] = _external_param(pval, dist)
                except _BadParam as exc:
                    raise self._damaged_field(
                        study, numbers.get(tid, "?"), f"parameter {pname!r}", pval, str(exc)
                    ) from None
            steps = dict(
                s.execute(
                    select(_o_intermediate.c.trial_id, func.count())
                    .join(_o_trials, _o_trials.c.trial_id == _o_intermediate.c.trial_id)
                    .where(scope)
                    .group_by(_o_intermediate.c.trial_id)
                ).all()
            )
            infos = {
                r.trial_id: r
                for r in s.scalars(
                    select(TrialInfoRow).where(
                        TrialInfoRow.study_id == sid,
                        self._uid_is(TrialInfoRow.study_uid, uid),
                        *(
                            [TrialInfoRow.trial_id.in_(list(trial_ids))]
                            if trial_ids is not None
                            else []
                        ),
                    )
                )
            }
            out: list[TrialRecord] = []
            for tid, number, state, start, end in trows:
                info = infos.get(tid)
                if info is not None:
                    self._check_stored_numbers(info, study, number)
                st = _OPTUNA_STATE.get(str(state), str(state).lower())
                if st == "failed" and info is not None and info.status == "interrupted":
                    st = "interrupted"
                duration = _trial_seconds(
                    info.wall_seconds if info is not None else None, start, end
                )
                p = params.get(tid, {})
                out.append(
                    TrialRecord(
                        study=study,
                        number=number,
                        trial_id=tid,
                        state=st,
                        value=values.get(tid) if st == "complete" or st == "pruned" else None,
                        params=p,
                        config=dict(info.config) if info is not None else dict(p),
                        epochs=info.epochs_trained if info is not None else steps.get(tid, 0),
                        duration_s=duration,
                        started_at=start,
                        finished_at=end,
                        engine=info.engine if info is not None else None,
                        reason=info.reason if info is not None else None,
                        data_fingerprint=info.data_fingerprint if info is not None else None,
                        param_count=info.param_count if info is not None else None,
                        extra=dict(info.extra or {}) if info is not None else {},
                        test_loss=info.test_loss if info is not None else None,
                        test_accuracy=info.test_accuracy if info is not None else None,
                        values=(
                            tuple(v for _, v in sorted(objective_values[tid].items()))
                            if tid in objective_values and st in ("complete", "pruned")
                            else None
                        ),
                        **{
                            name: getattr(info, name) if info is not None else None
                            for name in TRIAL_FIGURE_COLUMNS
                        },
                    )
                )
        if states:
            wanted = set(states)
            out = [t for t in out if t.state in wanted]
        return out

    @_names_broken_json
    def best(
        self,
        study: str,
        top: int = 1,
        predicate: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> list[TrialRecord]:
        """Completed trials, best objective first; ties go to fewer epochs, then less time.

        Ranks on a narrow query (value, epochs, time and, with a predicate, the configuration)
        and builds full records for the top ``top`` only: fast on studies of 10,000 trials.
        """
        sid = self.study_id(study)
        cols = [
            _o_trials.c.trial_id,
            _o_trials.c.number,
            _o_values.c.value,
            TrialInfoRow.epochs_trained,
            TrialInfoRow.wall_seconds,
            _o_trials.c.datetime_start,
            _o_trials.c.datetime_complete,
        ]
        if predicate is not None:
            cols.append(TrialInfoRow.config)
        scope = (
            _o_trials.c.study_id == sid,
            cast(_o_trials.c.state, String) == "COMPLETE",
            _o_values.c.objective == 0,
            _o_values.c.value.is_not(None),
        )
        with self.session("cannot read") as s:
            direction = s.execute(
                select(_o_directions.c.direction).where(
                    _o_directions.c.study_id == sid, _o_directions.c.objective == 0
                )
            ).scalar()
            maximize = str(direction or "MAXIMIZE").upper() == "MAXIMIZE"
            query = (
                select(*cols)
                .join(_o_values, _o_values.c.trial_id == _o_trials.c.trial_id)
                .outerjoin(TrialInfoRow, TrialInfoRow.trial_id == _o_trials.c.trial_id)
                .where(*scope)
            )
            if predicate is None:
                # Only trials at least as good as the top-th value can rank (ties included):
                # the database finds that value, Python orders the few candidates exactly.
                cutoff = s.execute(
                    select(_o_values.c.value)
                    .join(_o_trials, _o_trials.c.trial_id == _o_values.c.trial_id)
                    .where(*scope)
                    .order_by(_o_values.c.value.desc() if maximize else _o_values.c.value.asc())
                    .offset(top - 1)
                    .limit(1)
                ).scalar()
                if cutoff is not None:
                    query = query.where(
                        _o_values.c.value >= cutoff if maximize else _o_values.c.value <= cutoff
                    )
            rows = s.execute(query).all()
        sign = -1.0 if maximize else 1.0

        def duration(r: Any) -> float:
            return _trial_seconds(r.wall_seconds, r.datetime_start, r.datetime_complete) or 0.0

        if predicate is not None:
            # Trials without an rnnsearch row (created by plain Optuna) are judged on params.
            missing = [r.trial_id for r in rows if r.config is None]
            params = (
                {t.trial_id: t.params for t in self.trials(study, trial_ids=missing)}
                if missing
                else {}
            )
            rows = [r for r in rows if predicate(r.config or params.get(r.trial_id, {}))]
        rows = [r for r in rows if r.value is not None]
        for r in rows:
            self._check_numbers(r, ("value", "epochs_trained", "wall_seconds"), study, r.number)
        rows.sort(key=lambda r: (sign * r.value, r.epochs_trained or 0, duration(r), r.number))
        ids = [r.trial_id for r in rows[:top]]
        records = {t.trial_id: t for t in self.trials(study, trial_ids=ids)}
        return [records[i] for i in ids if i in records]


def _trial_seconds(
    wall_seconds: float | None, started: datetime | None, finished: datetime | None
) -> float | None:
    """A trial's duration: the wall time rnnsearch recorded for it, else Optuna's start to end
    (trials of plain Optuna), else unknown."""
    if wall_seconds is not None:
        return wall_seconds
    if started is not None and finished is not None:
        return (finished - started).total_seconds()
    return None


class _BadParam(ValueError):
    """A stored parameter that is not what its distribution says (what was expected)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _external_param(internal: float, distribution_json: str) -> Any:
    """Optuna stores categorical choices by index; turn them back into the user's values.
    Raises _BadParam for a stored value that is not a number (SQLite keeps what a hand edit
    writes) or not an index of the choices."""
    if not _is_number(internal):
        raise _BadParam("a number")
    try:
        spec = json.loads(distribution_json)
    except (TypeError, ValueError):
        return internal
    if not isinstance(spec, dict):
        return internal
    name = spec.get("name")
    attrs = spec.get("attributes")
    if name == "CategoricalDistribution":
        choices = attrs.get("choices") if isinstance(attrs, dict) else None
        if not isinstance(choices, list) or not (0 <= internal < len(choices)):
            raise _BadParam(f"an index of the choices {str(choices)[:60]}")
        return choices[int(internal)]
    if name in ("IntDistribution", "IntUniformDistribution", "IntLogUniformDistribution"):
        return int(internal)
    return float(internal)


def _artefact(row: ArtefactRow) -> ArtefactRecord:
    return ArtefactRecord(
        id=row.id,
        study_uid=row.study_uid,
        kind=row.kind,
        path=row.path,
        trial_id=row.trial_id,
        lineage=row.lineage,
    )
