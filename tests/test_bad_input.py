"""Hostile input at the command line (issue 16): a table of bad inputs, each refused alike.

For every row: exit code 2, exactly one line on stderr that starts ``rnnsearch: error:`` and names
the file, option or value, no traceback, and no file under the row's folder created or changed
(checksums before and after). Most rows run in-process (Typer's CliRunner); a few run the
installed ``rnnsearch`` in a subprocess. Nothing here trains: every row is refused first.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from search.cli import app

STUDY = "s1"
RNNSEARCH = Path(sys.executable).with_name("rnnsearch")


# -- the study database every row starts from --------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real study database (two trials recorded by hand, no training) and a plain one."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    from spaces import load_space
    from storage import StudyConfig, StudyDatabase

    root = tmp_path_factory.mktemp("template")
    db = StudyDatabase(f"sqlite:///{root / 'study.db'}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=db.optuna_storage, direction="maximize")
    dists = {"cell": CategoricalDistribution(["lstm", "gru"]), "units": IntDistribution(4, 64)}
    for number, (cell, units, value) in enumerate([("lstm", 8, 0.7), ("gru", 16, 0.8)]):
        params = {"cell": cell, "units": units}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        tid = study.trials[number]._trial_id
        db.record_trial_info(
            trial_id=tid,
            study_id=study._study_id,
            number=number,
            engine="optuna",
            config=params,
            status="complete",
            wall_seconds=1.0,
        )
    db.save_study_config(
        StudyConfig(
            name=STUDY,
            study_id=study._study_id,
            engine="optuna",
            space_name="default",
            space_json=load_space("default").to_json(),
            data={"source": "imdb", "limit": 200},
            seed=1,
            target_trials=2,
            options={},
        )
    )
    db.dispose()
    return root / "study.db"


def _break(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql)
    conn.close()


def broken_study(sql: str) -> Callable[[Path], None]:
    """A row's setup: the row's copy of the study database changed by ``sql``."""
    return lambda d: _break(d / "study.db", sql)


def _pickle_npz(d: Path) -> Path:
    """A pickle (of a harmless dict) disguised as an .npz."""
    path = d / "data.npz"
    path.write_bytes(pickle.dumps({"x_train": [1, 2], "y_train": [0, 1]}))
    return path


def _object_npz(d: Path) -> Path:
    """An .npz whose object array holds a pickled ``os.system`` callable (never to be loaded)."""
    path = d / "data.npz"
    arr = np.empty(2, dtype=object)
    arr[0] = os.system
    arr[1] = "echo owned"
    np.savez(path, x_train=arr, y_train=np.array([0, 1]))
    return path


def _numeric_npz(d: Path) -> Path:
    """A good numeric .npz (sequences of 3 features, two classes)."""
    rng = np.random.default_rng(0)
    path = d / "n.npz"
    np.savez(path, x_train=rng.normal(size=(40, 5, 3)), y_train=np.arange(40) % 2)
    return path


def _text_folder(d: Path) -> Path:
    """A good folder of texts, one sub-folder per class."""
    for label in ("neg", "pos"):
        (d / "texts" / label).mkdir(parents=True)
        for i in range(10):
            (d / "texts" / label / f"{i}.txt").write_text(f"{label} review number {i}\n")
    return d / "texts"


@dataclass
class Row:
    id: str
    args: Callable[[Path], list[str]]
    names: Callable[[Path], str] | str
    setup: Callable[[Path], Any] | None = None
    marks: list[Any] = field(default_factory=list)
    subprocess: bool = False
    #: Environment variables of the row (values may name the row's folder).
    env: Callable[[Path], dict[str, str]] | None = None


def db_url(d: Path) -> str:
    return f"sqlite:///{d / 'study.db'}"


def with_db(*args: str) -> Callable[[Path], list[str]]:
    """A command on the row's copy of the study database."""
    return lambda d: [*args, "--storage", db_url(d)]


def run_args(*extra: str) -> Callable[[Path], list[str]]:
    """`run` on a fresh database path in the row's folder (it must never appear)."""
    return lambda d: [
        "run", "--study", "x", "--trials", "1", "--quiet", *extra,
        "--storage", f"sqlite:///{d / 'new.db'}",
    ]  # fmt: skip


def write(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        path = d / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return make


DEEP_TOML = "x = " + "[" * 1000 + "]" * 1000 + "\n"
LONG_NAME = "n" * 10_000

ROWS: list[Row] = [
    # Typer/Click option errors: one line, exit 2, no box.
    Row("workers-0", run_args("--workers", "0"), "--workers"),
    Row("top-0", with_db("best", STUDY, "--top", "0"), "--top"),
    Row("studies-format-xml", with_db("studies", "--format", "xml"), "xml"),
    Row("limit-abc", run_args("--limit", "abc"), "--limit"),
    Row("engine-bogus", run_args("--engine", "bogus"), "bogus"),
    Row("trials-abc", run_args("--trials", "abc"), "--trials"),
    Row("run-missing-study", lambda d: ["run", "--storage", db_url(d)], "--study"),
    Row("best-missing-study-arg", lambda d: ["best", "--storage", db_url(d)], "STUDY"),
    Row("unknown-option", run_args("--bogus"), "--bogus"),
    Row("trials-state-bogus", with_db("trials", STUDY, "--state", "bogus"), "bogus"),
    Row("report-top-0", lambda d: ["report", STUDY, "--top", "0", "--out", str(d / "r")], "--top"),
    Row("retrain-epochs-0", with_db("retrain", STUDY, "--epochs", "0"), "--epochs"),
    Row("retrain-trial-negative", with_db("retrain", STUDY, "--trial", "-1"), "--trial"),
    Row("export-format-xml", with_db("export", STUDY, "--format", "xml"), "xml"),
    Row("spaces-show-format-xml", lambda d: ["spaces", "show", "default", "-f", "xml"], "xml"),
    Row("resume-trials-and-add", with_db("resume", STUDY, "--trials", "3", "--add", "1"), "--add"),
    Row("run-trials-and-add", run_args("--add", "1"), "--trials and --add"),
    # Values checked by search.validation before anything is opened.
    Row("seed-negative", run_args("--seed", "-1"), "--seed -1"),
    Row("seed-2**40", run_args("--seed", "1099511627776"), "1099511627776"),
    # PostgreSQL stores a seed in 32 signed bits: 2**31 used to fail there after the study
    # was half made
    Row("seed-2**31", run_args("--seed", "2147483648"), "--seed 2147483648"),
    Row("trials-huge", run_args("--trials", "99999999999999999999"), "99999999999999999999"),
    Row("trials-0", run_args("--trials", "0"), "--trials 0"),
    Row("add-0", run_args("--add", "0"), "--add 0"),
    Row("limit-0", run_args("--limit", "0"), "--limit 0"),
    Row("max-epochs-0", run_args("--max-epochs", "0"), "--max-epochs 0"),
    Row("patience-negative", run_args("--patience", "-1"), "--patience -1"),
    Row("keep-checkpoints-negative", run_args("--keep-checkpoints", "-1"), "--keep-checkpoints"),
    Row("time-budget-nan", run_args("--time-budget", "nan"), "nan"),
    # The compilation cache's folder (search/compile_cache.py) is checked before the run starts.
    Row(
        "compile-cache-is-a-file",
        run_args(),
        "RNNSEARCH_COMPILE_CACHE",
        setup=write("cache-file", "not a folder"),
        env=lambda d: {"RNNSEARCH_COMPILE_CACHE": str(d / "cache-file")},
    ),
    Row(
        "compile-cache-under-a-file",
        run_args(),
        "is not a folder",
        setup=write("cache-file", "not a folder"),
        env=lambda d: {"RNNSEARCH_COMPILE_CACHE": str(d / "cache-file" / "xla")},
    ),
    Row("time-budget-inf", run_args("--time-budget", "inf"), "inf"),
    Row("time-budget-negative", run_args("--time-budget", "-5m"), "-5m"),
    Row("time-budget-words", run_args("--time-budget", "soon"), "soon"),
    Row(
        "study-empty",
        lambda d: ["run", "--study", "", "--storage", f"sqlite:///{d / 'new.db'}"],
        "--study",
    ),
    Row(
        "study-10000-chars",
        lambda d: ["run", "--study", LONG_NAME, "--storage", f"sqlite:///{d / 'new.db'}"],
        "10000",
    ),
    Row(
        "study-control-char",
        lambda d: ["run", "--study", "a\nb", "--storage", f"sqlite:///{d / 'new.db'}"],
        "--study",
    ),
    Row("resume-empty-name", with_db("resume", ""), "STUDY"),
    Row("worker-control-char", with_db("worker", "a\tb"), "STUDY"),
    Row("best-long-name", with_db("best", LONG_NAME), "STUDY"),
    # Storage URLs.
    Row("url-ipv6-unclosed", lambda d: ["best", STUDY, "--storage", "postgresql://[::1"], "[::1"),
    Row("url-memory", lambda d: ["studies", "--storage", "sqlite:///:memory:"], ":memory:"),
    Row(
        "url-sqlite-no-path",
        lambda d: ["run", "--study", "x", "--quiet", "--storage", "sqlite://"],
        "sqlite://",
    ),
    Row(
        "url-sqlite-relative",
        lambda d: ["studies", "--storage", "sqlite://relative.db"],
        "sqlite:///relative.db",
    ),
    Row("url-mysql", lambda d: ["studies", "--storage", "mysql://u@h/db"], "mysql"),
    Row(
        "url-psycopg2",
        lambda d: ["studies", "--storage", "postgresql+psycopg2://127.0.0.1:5432/test"],
        "the driver 'psycopg2'",
    ),
    Row(
        "url-sqlite-unknown-driver",
        lambda d: ["run", "--study", "x", "--storage", f"sqlite+bogus:///{d / 'x.db'}"],
        "the driver 'bogus'",
    ),
    Row(
        "url-encoded-nul",
        lambda d: ["run", "--study", "x", "--storage", f"sqlite:///{d / 'a%00b.db'}"],
        "control character",
    ),
    Row("url-not-a-url", lambda d: ["studies", "--storage", "not a url"], "not a url"),
    Row("url-bad-port", lambda d: ["studies", "--storage", "postgresql://u@h:99999/db"], "99999"),
    Row(
        "run-into-missing-folder",
        lambda d: ["run", "--study", "x", "--storage", f"sqlite:///{d / 'nope' / 'x.db'}"],
        "nope",
    ),
    Row(
        "best-missing-db",
        lambda d: ["best", STUDY, "--storage", f"sqlite:///{d / 'no.db'}"],
        "no.db",
    ),
    Row(
        "studies-zero-byte",
        lambda d: ["studies", "--storage", f"sqlite:///{d / 'empty.db'}"],
        "empty.db",
        setup=write("empty.db", b""),
    ),
    Row(
        "best-zero-byte",
        lambda d: ["best", STUDY, "--storage", f"sqlite:///{d / 'empty.db'}"],
        "empty.db",
        setup=write("empty.db", b""),
    ),
    Row(
        "studies-text-file",
        lambda d: ["studies", "--storage", f"sqlite:///{d / 'notes.db'}"],
        "notes.db",
        setup=write("notes.db", "my notes\n"),
    ),
    Row(
        "run-onto-text-file",
        lambda d: ["run", "--study", "x", "--storage", f"sqlite:///{d / 'notes.db'}"],
        "notes.db",
        setup=write("notes.db", "my notes\n"),
    ),
    Row(
        "studies-on-folder",
        lambda d: ["studies", "--storage", f"sqlite:///{d / 'sub'}"],
        "sub",
        setup=lambda d: (d / "sub").mkdir(),
    ),
    Row(
        "trials-foreign-sqlite",
        lambda d: ["trials", STUDY, "--storage", f"sqlite:///{d / 'app.db'}"],
        "customers",
        setup=lambda d: _break(d / "app.db", "create table customers (id integer)"),
    ),
    Row(
        "studies-empty-sqlite",
        lambda d: ["studies", "--storage", f"sqlite:///{d / 'blank.db'}"],
        "blank.db",
        setup=lambda d: _break(d / "blank.db", "pragma user_version = 7"),
    ),
    Row("best-unknown-study", with_db("best", "nope"), "nope"),
    # --where
    Row(
        "where-300-parens",
        with_db("best", STUDY, "--where", "(" * 300 + "cell=lstm" + ")" * 300),
        "--where",
    ),
    Row(
        "where-5000-nots",
        with_db("trials", STUDY, "--where", "not " * 5000 + "cell=lstm"),
        "--where",
    ),
    Row(
        "where-too-long",
        with_db("best", STUDY, "--where", "cell=lstm or " * 400 + "units=8"),
        "--where",
    ),
    Row("where-unknown-name", with_db("best", STUDY, "--where", "colour=red"), "colour"),
    Row("where-syntax", with_db("trials", STUDY, "--where", "cell="), "--where"),
    # Space files
    Row(
        "spaces-validate-deep",
        lambda d: ["spaces", "validate", str(d / "deep.toml")],
        "deep.toml",
        setup=write("deep.toml", DEEP_TOML),
    ),
    Row(
        "run-space-deep",
        lambda d: [*run_args("--space", str(d / "deep.toml"))(d)],
        "deep.toml",
        setup=write("deep.toml", DEEP_TOML),
    ),
    Row(
        "spaces-validate-syntax",
        lambda d: ["spaces", "validate", str(d / "bad.toml")],
        "bad.toml",
        setup=write("bad.toml", "[dimensions\ncell = 1\n"),
    ),
    Row(
        "spaces-validate-binary",
        lambda d: ["spaces", "validate", str(d / "bin.toml")],
        "bin.toml",
        setup=write("bin.toml", b"\xff\xfe\x00garbage"),
    ),
    Row("spaces-validate-missing", lambda d: ["spaces", "validate", str(d / "no.toml")], "no.toml"),
    Row(
        "run-space-is-a-folder",
        lambda d: [*run_args("--space", str(d / "dir.toml"))(d)],
        "dir.toml: is a folder",
        setup=lambda d: (d / "dir.toml").mkdir(),
    ),
    Row("spaces-show-unknown", lambda d: ["spaces", "show", "nosuchspace"], "nosuchspace"),
    Row(
        "run-space-unknown-key",
        lambda d: [*run_args("--space", str(d / "odd.toml"))(d)],
        "odd.toml",
        setup=write("odd.toml", 'colour = "red"\n'),
    ),
    # --out of export and report
    Row(
        "export-out-missing-folder",
        lambda d: [*with_db("export", STUDY)(d), "--out", str(d / "nope" / "t.csv")],
        "nope",
    ),
    Row(
        "export-out-onto-folder",
        lambda d: [*with_db("export", STUDY)(d), "--out", str(d / "outdir")],
        "outdir",
        setup=lambda d: (d / "outdir").mkdir(),
    ),
    Row(
        "report-out-onto-file",
        lambda d: [*with_db("report", STUDY)(d), "--out", str(d / "r.txt")],
        "r.txt",
        setup=write("r.txt", "keep me\n"),
    ),
    # Broken JSON stored in the study database.
    Row(
        "best-broken-trial-config",
        with_db("best", STUDY, "--top", "5"),
        "trial 1",
        setup=broken_study("update rnnsearch_trials set config='{' where number=1"),
    ),
    Row(
        "trials-broken-trial-config",
        with_db("trials", STUDY),
        "trial 0",
        setup=broken_study("update rnnsearch_trials set config='[1,' where number=0"),
    ),
    Row(
        "studies-broken-data",
        with_db("studies"),
        STUDY,
        setup=broken_study("update rnnsearch_studies set data='{nope'"),
    ),
    Row(
        "export-broken-trial-config",
        with_db("export", STUDY),
        "trial 1",
        setup=broken_study("update rnnsearch_trials set config='x' where number=1"),
    ),
    Row(
        "best-where-broken-options",
        with_db("best", STUDY, "--where", "cell=lstm"),
        "options",
        setup=broken_study("update rnnsearch_studies set options='{'"),
    ),
    Row(
        "resume-broken-space",
        with_db("resume", STUDY, "--quiet"),
        STUDY,
        setup=broken_study("update rnnsearch_studies set space_json='{'"),
    ),
    Row(
        "resume-broken-data",
        with_db("resume", STUDY, "--quiet"),
        STUDY,
        setup=broken_study("update rnnsearch_studies set data='{'"),
    ),
    # Valid JSON of the wrong kind, or text in a number column (SQLite keeps what a hand edit
    # writes).
    Row(
        "resume-data-a-string",
        with_db("resume", STUDY, "--quiet"),
        'the stored data is "just a string", expected a JSON object',
        setup=broken_study("update rnnsearch_studies set data='\"just a string\"'"),
    ),
    Row(
        "best-where-options-a-list",
        with_db("best", STUDY, "--where", "cell=lstm"),
        "the stored options is [1, 2]",
        setup=broken_study("update rnnsearch_studies set options='[1,2]'"),
    ),
    Row(
        "resume-seed-text",
        with_db("resume", STUDY, "--quiet"),
        "the stored seed",
        setup=broken_study("update rnnsearch_studies set seed='abc'"),
    ),
    Row(
        "resume-schema-version-text",
        with_db("resume", STUDY, "--quiet"),
        "schema version in the study database is 'abc'",
        setup=broken_study("update rnnsearch_meta set value='abc' where key='schema_version'"),
    ),
    Row(
        "trials-val-accuracy-text",
        with_db("trials", STUDY),
        "trial 1: the stored val_accuracy is 'abc', expected a number",
        setup=broken_study("update rnnsearch_trials set val_accuracy='abc' where number=1"),
    ),
    Row(
        "best-wall-seconds-text",
        with_db("best", STUDY),
        "trial 1: the stored wall_seconds",
        setup=broken_study("update rnnsearch_trials set wall_seconds='x' where number=1"),
    ),
    Row(
        "trials-optuna-param-text",
        with_db("trials", STUDY),
        "trial 0: the stored parameter 'cell' is 'abc', expected a number",
        setup=broken_study("update trial_params set param_value='abc' where trial_id=1"),
    ),
    Row(
        "export-optuna-choice-out-of-range",
        with_db("export", STUDY),
        "trial 1: the stored parameter 'cell' is '7.0', expected an index of the choices",
        setup=broken_study(
            "update trial_params set param_value=7 where trial_id=2 and param_name='cell'"
        ),
    ),
    Row(
        "best-optuna-value-text",
        with_db("best", STUDY),
        "trial 0: the stored value is 'abc', expected a number",
        setup=broken_study("update trial_values set value='abc' where trial_id=1"),
    ),
    Row(
        "report-optuna-value-text",
        lambda d: [*with_db("report", STUDY)(d), "--out", str(d / "r")],
        "trial 0: the stored value is 'abc', expected a number",
        setup=broken_study("update trial_values set value='abc' where trial_id=1"),
    ),
    # Data files and runs the service refuses (no study database may be created).
    Row(
        "data-pickle-as-npz",
        lambda d: [*run_args("--data", str(d / "data.npz"))(d)],
        "data.npz",
        setup=_pickle_npz,
    ),
    Row(
        "data-object-npz-os-system",
        lambda d: [*run_args("--data", str(d / "data.npz"))(d)],
        "data.npz",
        setup=_object_npz,
    ),
    Row(
        "data-missing-file",
        lambda d: [*run_args("--data", str(d / "missing.csv"))(d)],
        "missing.csv",
    ),
    Row(
        "data-empty-csv",
        lambda d: [*run_args("--data", str(d / "d.csv"))(d)],
        "d.csv",
        setup=write("d.csv", "text,label\n"),
    ),
    Row(
        "export-onto-the-study-database",
        lambda d: [*with_db("export", STUDY)(d), "--out", str(d / "study.db")],
        "that is the study database itself",
    ),
    Row(
        "data-csv-duplicate-column",
        lambda d: [*run_args("--data", str(d / "d.csv"))(d)],
        "d.csv: column 'text' appears twice in the header (columns 1 and 3)",
        setup=write("d.csv", "text,label,text\n" + "a b,0,c d\ne f,1,g h\n" * 10),
    ),
    Row(
        "run-no-jit-under-jax",
        run_args("--backend", "jax", "--no-jit"),
        "--no-jit: JAX compiles every training step",
    ),
    Row(
        "data-npz-with-text-col",
        lambda d: [*run_args("--data", str(d / "n.npz"), "--text-col", "review")(d)],
        "--text-col review: ",
        setup=_numeric_npz,
    ),
    Row(
        "data-folder-with-label-col",
        lambda d: [*run_args("--data", str(d / "texts"), "--label-col", "y")(d)],
        "--label-col y: ",
        setup=_text_folder,
    ),
    Row(
        "resume-missing-db",
        lambda d: ["resume", "x", "--quiet", "--storage", f"sqlite:///{d / 'none.db'}"],
        "none.db",
    ),
    # The same refusals from the installed command, in a subprocess.
    Row("sub-seed-negative", run_args("--seed", "-1"), "--seed -1", subprocess=True),
    Row(
        "sub-url-ipv6",
        lambda d: ["best", STUDY, "--storage", "postgresql://[::1"],
        "[::1",
        subprocess=True,
    ),
    Row(
        "sub-where-nested",
        with_db("best", STUDY, "--where", "(" * 300 + "cell=lstm" + ")" * 300),
        "--where",
        subprocess=True,
    ),
    Row(
        "sub-spaces-validate-deep",
        lambda d: ["spaces", "validate", str(d / "deep.toml")],
        "deep.toml",
        setup=write("deep.toml", DEEP_TOML),
        subprocess=True,
    ),
    Row(
        "sub-studies-zero-byte",
        lambda d: ["studies", "--storage", f"sqlite:///{d / 'empty.db'}"],
        "empty.db",
        setup=write("empty.db", b""),
        subprocess=True,
    ),
    Row("sub-workers-0", run_args("--workers", "0"), "--workers", subprocess=True),
    # Folders a run would write to, checked before the study is created.
    Row(
        "checkpoint-dir-is-a-file",
        lambda d: run_args("--checkpoint-dir", str(d / "a-file"))(d),
        "--checkpoint-dir",
        setup=write("a-file", "x"),
    ),
    Row(
        "checkpoint-dir-under-a-file",
        lambda d: run_args("--checkpoint-dir", str(d / "a-file" / "x"))(d),
        "--checkpoint-dir",
        setup=write("a-file", "x"),
    ),
    Row("checkpoint-dir-empty", run_args("--checkpoint-dir", ""), "--checkpoint-dir"),
    Row("checkpoint-dir-in-proc", run_args("--checkpoint-dir", "/proc/rnnsearch"), "/proc"),
    Row("tensorboard-empty", run_args("--tensorboard", ""), "--tensorboard"),
    Row("storage-empty", lambda d: ["studies", "--storage", ""], "--storage"),
    # libpq's own parser names an option it does not know, before any connection is tried
    Row(
        "storage-postgres-unknown-option",
        lambda d: ["studies", "--storage", "postgresql://u@127.0.0.1:5432/test?bogus=1"],
        'invalid connection option "bogus"',
    ),
    # a value libpq refuses as it connects, before it reaches the server: a usage error too
    Row(
        "storage-postgres-bad-sslmode",
        lambda d: ["studies", "--storage", "postgresql://u:pw@127.0.0.1:5432/test?sslmode=bogus"],
        'u:***@127.0.0.1:5432/test?sslmode=bogus\': invalid sslmode value: "bogus"',
    ),
    Row(
        "run-storage-postgres-bad-timeout",
        lambda d: [
            "run",
            "--study",
            "x",
            "--trials",
            "1",
            "--quiet",
            "--storage",
            "postgresql://u@127.0.0.1:5432/test?connect_timeout=abc",
        ],  # fmt: skip
        "bad value for connect_timeout: 'abc'",
    ),
    Row(
        "report-unknown-study",
        lambda d: ["report", "nosuch", "--out", str(d / "r"), "--storage", db_url(d)],
        "nosuch",
    ),
    Row("resume-trials-below-finished", with_db("resume", STUDY, "--trials", "1"), "--trials 1"),
    Row(
        "predict-text-not-utf8",
        lambda d: ["predict", str(d / "m.keras"), "--text", "bad \udcff text"],
        "--text",
    ),
    Row(
        "export-model-out-under-a-file",
        lambda d: ["export-model", str(d / "m.keras"), "--out", str(d / "a-file" / "sub")],
        "a-file is a file; expected a folder",
        setup=write("a-file", "x"),
    ),
    Row("export-model-out-empty", lambda d: ["export-model", "m.keras", "--out", ""], "--out"),
    Row(
        "retrain-save-under-a-file",
        with_db("retrain", STUDY, "--save", "a-file/m.keras"),
        "a-file is a file; expected a folder",
        setup=write("a-file", "x"),
    ),
    Row(
        "retrain-save-onto-a-folder",
        with_db("retrain", STUDY, "--save", "d.keras"),
        "d.keras: is a folder",
        setup=lambda d: (d / "d.keras").mkdir(),
    ),
    Row(
        "model-save-onto-a-folder",
        with_db("model", STUDY, "--save", "d.keras"),
        "d.keras: is a folder",
        setup=lambda d: (d / "d.keras").mkdir(),
    ),
    Row(
        "space-units-absurd",
        lambda d: ["spaces", "validate", str(d / "huge.toml")],
        "units",
        setup=write("huge.toml", "[dimensions]\nunits = 100000000000\n"),
    ),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256), folders marked as such."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_the_table_is_big_enough():
    assert len(ROWS) >= 60
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=r.marks) for r in ROWS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    row: Row, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(template, d / "study.db")
    if row.setup is not None:
        row.setup(d)
    env = {
        "RNNSEARCH_CACHE": str(d / "cache"),
        "XDG_CACHE_HOME": str(d / "xdg"),
        "RNNSEARCH_STORAGE": f"sqlite:///{d / 'default.db'}",
    }
    if row.env is not None:
        env.update(row.env(d))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RNNSEARCH_DEBUG", raising=False)
    monkeypatch.chdir(d)
    args = row.args(d)
    before = snapshot(d)
    if row.subprocess:
        proc = subprocess.run(
            [str(RNNSEARCH), *args], capture_output=True, text=True, timeout=120, cwd=d
        )
        code, stderr, output = proc.returncode, proc.stderr, proc.stdout + proc.stderr
    else:
        result = CliRunner().invoke(app, args)
        code, stderr, output = result.exit_code, result.stderr, result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
    after = snapshot(d)
    names = row.names(d) if callable(row.names) else row.names
    lines = stderr.strip().splitlines()
    assert code == 2, output[-2000:]
    assert "Traceback" not in output
    assert len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("rnnsearch: error: "), lines[0]
    assert names in lines[0], lines[0]
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}  # fmt: skip


# -- query commands on a good database write nothing ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["studies"],
        ["best", STUDY, "--top", "2"],
        ["best", STUDY, "--where", "cell=gru"],
        ["trials", STUDY, "--format", "json"],
        ["export", STUDY, "--format", "json"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_query_commands_leave_the_database_and_folder_unchanged(
    args: list[str], template: Path, tmp_path: Path
) -> None:
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(template, d / "study.db")
    with sqlite3.connect(d / "study.db") as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    conn.close()
    before = snapshot(d)
    result = CliRunner().invoke(app, [*args, "--storage", db_url(d)])
    assert result.exit_code == 0, result.output
    assert snapshot(d) == before  # no -wal/-shm left, no byte changed


def test_a_read_only_wal_database_is_read_without_leaving_files(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file or folder is not writable, the database opens mode=ro (immutable)."""
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(template, d / "study.db")
    before = snapshot(d)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if mode == os.W_OK else real_access(p, mode)
    )
    result = CliRunner().invoke(app, ["best", STUDY, "-f", "json", "--storage", db_url(d)])
    assert result.exit_code == 0, result.output
    assert '"gru"' in result.stdout
    assert snapshot(d) == before


def test_a_plain_optuna_database_is_queried_without_writing(tmp_path: Path) -> None:
    """No rnnsearch tables: the query commands use empty TEMP tables, the file stays as is."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(study_name="plain", storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    del study
    before = snapshot(tmp_path)
    result = CliRunner().invoke(
        app, ["best", "plain", "--top", "3", "-f", "json", "--storage", url]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count('"rank"') == 3
    assert snapshot(tmp_path) == before
    # retrain refuses a study it did not create, or none, without adding its tables first
    for study, message in (("plain", "not created by rnnsearch"), ("nosuch", "no study named")):
        refused = CliRunner().invoke(app, ["retrain", study, "--storage", url])
        assert refused.exit_code == 2, refused.output
        assert message in refused.stderr
        assert snapshot(tmp_path) == before


@pytest.mark.postgres
def test_a_plain_optuna_postgres_database_is_queried_without_writing(postgres_url: str) -> None:
    """As on SQLite: the query commands read a plain Optuna database on PostgreSQL through empty
    TEMP tables and leave no rnnsearch table (nor anything else) behind."""
    import optuna
    import sqlalchemy as sa

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="plain", storage=postgres_url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    del study

    def contents() -> dict[str, int]:
        engine = sa.create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                names = sa.inspect(conn).get_table_names()
                count = 'select count(*) from "{}"'
                return {n: conn.execute(sa.text(count.format(n))).scalar() for n in names}
        finally:
            engine.dispose()

    before = contents()
    assert "trials" in before and not any(n.startswith("rnnsearch_") for n in before)
    best = CliRunner().invoke(
        app, ["best", "plain", "--top", "3", "-f", "json", "--storage", postgres_url]
    )
    assert best.exit_code == 0, best.output
    assert best.stdout.count('"rank"') == 3
    for command in (["studies"], ["trials", "plain"], ["export", "plain"]):
        result = CliRunner().invoke(app, [*command, "-f", "json", "--storage", postgres_url])
        assert result.exit_code == 0, (command, result.output)
        rows = json.loads(result.stdout)
        if command == ["studies"]:
            assert [row["name"] for row in rows] == ["plain"], rows
        else:
            assert len(rows) == 3 and rows[0]["value"] is not None, (command, rows)
    refused = CliRunner().invoke(app, ["retrain", "plain", "--storage", postgres_url])
    assert refused.exit_code == 2, refused.output
    assert "not created by rnnsearch" in refused.stderr
    assert contents() == before


def test_an_empty_storage_variable_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNSEARCH_STORAGE", "")
    result = CliRunner().invoke(app, ["studies"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "$RNNSEARCH_STORAGE is set but empty" in line
    assert list(tmp_path.iterdir()) == []  # no rnnsearch.db by default


def test_delete_without_an_answer_deletes_nothing(template: Path, tmp_path: Path) -> None:
    shutil.copy(template, tmp_path / "study.db")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, ["delete", STUDY, "--storage", db_url(tmp_path)], input="")
    assert result.exit_code == 1, result.output
    assert "not deleted (answer y, or pass --yes)" in result.stderr.strip().splitlines()[-1]
    assert snapshot(tmp_path) == before


def test_a_refused_delete_does_not_mend_the_schema(template: Path, tmp_path: Path) -> None:
    """Opening for writing creates missing tables; a delete answered no must not open so."""
    shutil.copy(template, tmp_path / "study.db")
    _break(tmp_path / "study.db", "drop table rnnsearch_epochs")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, ["delete", STUDY, "--storage", db_url(tmp_path)], input="n\n")
    assert result.exit_code == 1, result.output
    assert snapshot(tmp_path) == before
    with sqlite3.connect(tmp_path / "study.db") as conn:
        tables = {name for (name,) in conn.execute("select name from sqlite_master")}
    conn.close()
    assert "rnnsearch_epochs" not in tables and "rnnsearch_trials" in tables


def test_debug_keeps_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["best", STUDY, "--debug", "--storage", f"sqlite:///{tmp_path / 'no.db'}"]
    )
    assert result.exit_code != 0
    assert result.exception is not None and not isinstance(result.exception, SystemExit)


def _without_root_powers() -> list[str]:
    """A command prefix that runs as this user without root's power to write read-only files."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop the power to write anything")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_read_only_database_is_refused_for_writing_and_left_as_it_was(
    where: str, template: Path, tmp_path: Path
) -> None:
    """A command that writes (delete, here) on a read-only database file or folder: one line,
    exit 2, and no -wal/-shm files left beside it (they blocked every later open)."""
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(template, d / "study.db")
    before = snapshot(d)
    (d / "study.db").chmod(0o444) if where == "file" else d.chmod(0o555)
    try:
        proc = subprocess.run(
            [*_without_root_powers(), str(RNNSEARCH), "delete", STUDY, "--yes",
             "--storage", db_url(d)],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
    finally:
        (d / "study.db").chmod(0o644) if where == "file" else d.chmod(0o755)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "read-only" in lines[0], proc.stderr
    assert snapshot(d) == before
