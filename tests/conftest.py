"""Shared fixtures: the offline IMDB copy, fresh storage URLs (SQLite file or PostgreSQL)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RNNSEARCH_SHARED", REPO.parent / "shared"))
IMDB_NPZ = SHARED / "data" / "imdb" / "imdb.npz"
IMDB_CSV = SHARED / "data" / "imdb" / "imdb_reviews.csv.gz"
POSTGRES_URL = os.environ.get(
    "RNNSEARCH_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# In-process tests share one Keras, loaded with TensorFlow: tiny models train fastest there,
# uncompiled. The JAX backend and compiled steps have their own tests (test_compiled_steps.py),
# in subprocesses where they need another backend; the crash, resume and worker tests' processes
# run under JAX too (docs/testing.md).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# JAX's compiled steps (search/compile_cache.py) go to a folder of this test process, never the
# user's ~/.cache; the subprocesses the tests start inherit it.
if "RNNSEARCH_COMPILE_CACHE" not in os.environ:
    _compile_cache = tempfile.mkdtemp(prefix="rnnsearch-tests-xla-")
    atexit.register(shutil.rmtree, _compile_cache, ignore_errors=True)
    os.environ["RNNSEARCH_COMPILE_CACHE"] = _compile_cache


@pytest.fixture(scope="session")
def imdb_npz() -> Path:
    if not IMDB_NPZ.is_file():
        pytest.fail(f"the offline IMDB copy is missing: {IMDB_NPZ} (../shared beside the repo)")
    return IMDB_NPZ


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def _postgres_schema_url() -> tuple[str, str]:
    """A fresh, empty schema on the test server, so tests never see each other's tables."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", schema


@pytest.fixture()
def postgres_url():
    import sqlalchemy as sa

    try:
        url, schema = _postgres_schema_url()
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not reachable (.ci/run starts it): {exc}")
    yield url
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path: Path) -> str:
    """Every storage test runs against both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def silence_heartbeat():
    """``silence_heartbeat(url, trial_id, seconds)``: move a trial's last heartbeat that many
    seconds into the past, as if its process had stopped beating then (any storage URL)."""
    from datetime import datetime, timedelta

    import sqlalchemy as sa

    def silence(url: str, trial_id: int, seconds: float) -> None:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                beat = conn.execute(
                    sa.text("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :t"),
                    {"t": trial_id},
                ).scalar_one()
                if isinstance(beat, str):  # SQLite returns its timestamps as text
                    beat = datetime.fromisoformat(beat)
                conn.execute(
                    sa.text("UPDATE trial_heartbeats SET heartbeat = :b WHERE trial_id = :t"),
                    {"b": beat - timedelta(seconds=seconds), "t": trial_id},
                )
        finally:
            engine.dispose()

    return silence
