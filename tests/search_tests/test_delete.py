"""`rnnsearch delete STUDY`: the study, its rows and the files it recorded creating; no more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli import app

SPACE = """
name = "tiny-delete"
[dimensions]
cell = "gru"
units = { low = 4, high = 6 }
maxlen = 30
embedding_dim = 8
vocab_size = 1000
batch_size = 32
"""


def test_workers_get_the_storage_url_through_the_environment_only():
    from search.workers import worker_command

    command = worker_command("s")
    assert "--storage" not in command and not any("://" in part for part in command)


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def test_delete_removes_the_study_its_rows_and_recorded_files_only(tmp_path: Path, imdb_npz):
    space = tmp_path / "s.toml"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    for study in ("gone", "kept"):
        ran = invoke(
            "run", "--study", study, "--space", str(space), "--trials", "2", "--max-epochs", "1",
            "--data", str(imdb_npz), "--limit", "200", "--storage", url, "--quiet", "--seed", "1",
        )  # fmt: skip
        assert ran.exit_code == 0, ran.output
    base = tmp_path / "d.db.rnnsearch"
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    assert len(folders) == 2  # one folder per study identity
    # Owner-only: the database file and every artefact folder (the umask here is 022).
    assert (tmp_path / "d.db").stat().st_mode & 0o777 == 0o600
    for folder in [base, *base.rglob("*")]:
        if folder.is_dir():
            assert folder.stat().st_mode & 0o777 == 0o700, folder
    # Something of the user's inside a study's folder: not recorded, so never deleted.
    from storage import StudyDatabase

    db = StudyDatabase(url, create=False)
    gone_uid = db.study_config("gone").uid
    db.dispose()
    mine = base / gone_uid / "notes.txt"
    mine.write_text("mine")
    assert list((base / gone_uid / "checkpoints").glob("lineage-*"))

    declined = invoke("delete", "gone", "--storage", url, input="n\n")
    assert declined.exit_code == 1 and "not deleted" in declined.stderr
    listed = json.loads(invoke("studies", "--storage", url, "--format", "json").stdout)
    assert sorted(s["name"] for s in listed) == ["gone", "kept"]

    done = invoke("delete", "gone", "--yes", "--storage", url)
    assert done.exit_code == 0, done.output
    assert "deleted study gone: 2 trials" in done.stdout
    listed = json.loads(invoke("studies", "--storage", url, "--format", "json").stdout)
    assert [s["name"] for s in listed] == ["kept"]
    assert not (base / gone_uid / "checkpoints").exists()
    assert mine.read_text() == "mine"
    kept = json.loads(invoke("trials", "kept", "--storage", url, "--format", "json").stdout)
    assert [t["state"] for t in kept] == ["complete", "complete"]
    assert all(t["epochs"] == 1 for t in kept)
    # A new study of the deleted one's name starts afresh: nothing of the old one shows.
    again = invoke(
        "run", "--study", "gone", "--space", str(space), "--trials", "1", "--max-epochs", "1",
        "--data", str(imdb_npz), "--limit", "200", "--storage", url, "--quiet",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    fresh = json.loads(invoke("trials", "gone", "--storage", url, "--format", "json").stdout)
    assert [t["number"] for t in fresh] == [0] and fresh[0]["epochs"] == 1

    missing = invoke("delete", "nope", "--yes", "--storage", url)
    assert missing.exit_code == 2 and "no study named 'nope'" in missing.stderr


def test_a_copied_or_moved_database_deletes_only_its_own_files(tmp_path: Path, imdb_npz):
    """A database records absolute paths. Deleting a study in a copy of the database (a backup
    in another folder) must leave the original's checkpoints alone; a database moved with its
    folder deletes its files where they are now; a checkpoint folder replaced by a file does
    not block a delete."""
    import shutil

    space = tmp_path / "s.toml"
    space.write_text(SPACE)
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'orig.db'}"
    ran = invoke(
        "run", "--study", "s", "--space", str(space), "--trials", "2", "--max-epochs", "1",
        "--data", str(imdb_npz), "--limit", "200", "--storage", url, "--quiet", "--seed", "1",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    original = sorted(p for p in (home / "orig.db.rnnsearch").rglob("*") if p.is_file())
    assert any(p.name == "model.keras" for p in original)

    (tmp_path / "bak").mkdir()
    shutil.copy(home / "orig.db", tmp_path / "bak" / "copy.db")
    done = invoke("delete", "s", "--yes", "--storage", f"sqlite:///{tmp_path / 'bak' / 'copy.db'}")
    assert done.exit_code == 0, done.output
    assert sorted(p for p in (home / "orig.db.rnnsearch").rglob("*") if p.is_file()) == original
    saved = invoke("model", "s", "--save", str(tmp_path / "m.keras"), "--storage", url)
    assert saved.exit_code == 0, saved.output  # the original's best checkpoint is still there

    moved = tmp_path / "moved"
    shutil.move(home, moved)
    uid_folder = next((moved / "orig.db.rnnsearch").iterdir())
    lineages = sorted((uid_folder / "checkpoints").iterdir())
    shutil.rmtree(lineages[0])
    lineages[0].write_text("a file where a checkpoint folder was")
    gone = invoke("delete", "s", "--yes", "--storage", f"sqlite:///{moved / 'orig.db'}")
    assert gone.exit_code == 0, gone.output
    assert not (uid_folder / "checkpoints").exists() or not any(
        (uid_folder / "checkpoints").iterdir()
    )


def _start_run(study: str, space: Path, url: str, imdb_npz: Path, tmp_path: Path):
    """A long training run in its own process, returned once its first trial runs and has
    recorded its owner (the trial is created `running` a moment before its pid is written)."""
    import os
    import subprocess
    import sys
    import time

    from storage import StudyDatabase

    rnnsearch = Path(sys.executable).with_name("rnnsearch")
    proc = subprocess.Popen(
        [
            str(rnnsearch), "run", "--study", study, "--space", str(space), "--trials", "3",
            "--max-epochs", "50", "--data", str(imdb_npz), "--limit", "600", "--storage", url,
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RNNSEARCH_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listed = invoke("trials", study, "--storage", url, "--format", "json")
        if listed.exit_code == 0 and any(
            t["state"] == "running" for t in json.loads(listed.stdout)
        ):
            db = StudyDatabase(url, create=False)
            try:
                running = db.trials(study, ["running"])
            finally:
                db.dispose()
            if any("pid" in t.extra for t in running):
                return proc
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the run never started a trial")


def test_delete_refuses_a_study_with_a_live_run_and_not_one_killed(tmp_path: Path, imdb_npz):
    """A delete under a training run would pull the study from under it: refused while the
    run's process lives; once it is killed (-9, its trial left `running`), the delete goes
    ahead. `--force` deletes under a live run, which then stops with one line, no traceback."""
    import signal

    space = tmp_path / "s.toml"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    proc = _start_run("busy", space, url, imdb_npz, tmp_path)
    try:
        refused = invoke("delete", "busy", "--yes", "--storage", url)
        assert refused.exit_code == 2, refused.output
        assert f"trial(s) running (trial 0, process {proc.pid}" in refused.stderr
        assert proc.poll() is None  # the run goes on
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = invoke("delete", "busy", "--yes", "--storage", url)
    assert done.exit_code == 0, done.output
    assert "deleted study busy" in done.stdout

    proc = _start_run("forced", space, url, imdb_npz, tmp_path)
    try:
        forced = invoke("delete", "forced", "--yes", "--force", "--storage", url)
        assert forced.exit_code == 0, forced.output
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert lines[-1] == (
        "rnnsearch: error: the study was deleted while this command ran (`delete --force`, or "
        "another tool); it stopped"
    ), stderr[-2000:]


def test_delete_under_another_machines_run_follows_its_heartbeat(
    tmp_path: Path, imdb_npz, silence_heartbeat
):
    """A trial running on another machine cannot be checked by its process id: it is live
    while its heartbeat is fresh (refused), and its process is taken as gone once the beat is
    older than the grace period (the delete goes ahead), the rule a resume recovers it by."""
    import optuna

    from storage import StudyDatabase
    from storage.database import GRACE_PERIOD

    space = tmp_path / "s.toml"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    ran = invoke(
        "run", "--study", "far", "--space", str(space), "--trials", "1", "--max-epochs", "1",
        "--data", str(imdb_npz), "--limit", "200", "--storage", url, "--quiet",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    db = StudyDatabase(url, create=False, read_only=False)
    try:
        study = optuna.load_study(study_name="far", storage=db.optuna_storage)
        trial = study.ask()
        tid = trial._trial_id
        db.record_trial_info(
            trial_id=tid,
            study_id=db.study_id("far"),
            number=trial.number,
            engine="optuna",
            config={"cell": "gru", "units": 5},
            status="running",
            extra={"host": "another-machine", "pid": 1, "pid_started": 0.0},
        )
        db.optuna_storage.record_heartbeat(tid)
    finally:
        db.dispose()

    refused = invoke("delete", "far", "--yes", "--storage", url)
    assert refused.exit_code == 2, refused.output
    assert "trial(s) running (trial 1, process 1 on another-machine)" in refused.stderr

    silence_heartbeat(url, tid, GRACE_PERIOD + 60)  # the other machine went silent
    done = invoke("delete", "far", "--yes", "--storage", url)
    assert done.exit_code == 0, done.output
    assert "deleted study far: 2 trials" in done.stdout


@pytest.mark.postgres
def test_a_copy_of_a_postgres_database_deletes_none_of_the_originals_files(
    tmp_path: Path, imdb_npz, postgres_url, monkeypatch
):
    """Server databases keep their studies' files in a folder of their own (by server,
    database and schema): a delete in a copy of the database (here: another schema) used to
    remove the original study's checkpoints, both keeping theirs under the same identity."""
    import sqlalchemy as sa

    from search.artefacts import DATABASES

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    space = tmp_path / "s.toml"
    space.write_text(SPACE)
    ran = invoke(
        "run", "--study", "s", "--space", str(space), "--trials", "2", "--max-epochs", "1",
        "--data", str(imdb_npz), "--limit", "200", "--storage", postgres_url, "--quiet",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    databases = tmp_path / "cache" / "rnnsearch" / DATABASES
    original = sorted(p for p in databases.rglob("*") if p.is_file())
    assert any(p.name == "model.keras" for p in original)

    engine = sa.create_engine(postgres_url)
    copy_schema = f"copy_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with engine.begin() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        ).scalars()
        conn.execute(sa.text(f'CREATE SCHEMA "{copy_schema}"'))
        for table in tables:
            conn.execute(
                sa.text(f'CREATE TABLE "{copy_schema}"."{table}" AS TABLE "{schema}"."{table}"')
            )
    copy_url = postgres_url.replace(schema, copy_schema)
    try:
        done = invoke("delete", "s", "--yes", "--storage", copy_url)
        assert done.exit_code == 0, done.output
        assert sorted(p for p in databases.rglob("*") if p.is_file()) == original
        saved = invoke("model", "s", "--save", str(tmp_path / "m.keras"), "--storage", postgres_url)
        assert saved.exit_code == 0, saved.output
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{copy_schema}" CASCADE'))
        engine.dispose()


def test_a_server_database_study_from_before_keeps_its_folder(tmp_path: Path, monkeypatch):
    """Studies of a server database created before each database had a folder of its own keep
    their files where they are ($XDG_CACHE_HOME/rnnsearch/<uid>); new ones get the folder."""
    from search.artefacts import StudyArtefacts, artefact_base, cache_root

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    url = "postgresql+psycopg://u@db.example:5432/studies"
    base = artefact_base(url)
    assert base.parent == cache_root() / "databases" and base.name.startswith("db.example-5432")
    (cache_root() / "old-uid" / "checkpoints").mkdir(parents=True)
    assert StudyArtefacts(None, "old-uid", base).root == cache_root() / "old-uid"  # type: ignore[arg-type]
    assert StudyArtefacts(None, "new-uid", base).root == base / "new-uid"  # type: ignore[arg-type]
    # one folder per database: not the driver or the password, but the schema tells them apart
    assert artefact_base("postgresql://u:secret@db.example:5432/studies") == base
    assert artefact_base(url + "?options=-csearch_path%3Dother") != base
