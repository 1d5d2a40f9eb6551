"""`run --checkpoint-dir DIR`: the study's artefacts live in DIR/<study uid>/, stored with it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from search.cli import app
from storage import StudyDatabase

SPACE = """
name = "tiny-ckdir"
[dimensions]
cell = "gru"
units = 4
maxlen = 30
embedding_dim = 8
vocab_size = 1000
batch_size = 32
"""


def test_artefacts_go_to_the_checkpoint_dir_and_resume_finds_them(
    tmp_path: Path, imdb_npz: Path, monkeypatch
):
    (tmp_path / "s.toml").write_text(SPACE)
    (tmp_path / "shared").mkdir()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.chdir(tmp_path)
    args = ["--storage", url, "--quiet", "--format", "json"]
    ran = CliRunner().invoke(
        app,
        ["run", "--study", "c", "--space", "s.toml", "--trials", "1", "--max-epochs", "1",
         "--data", str(imdb_npz), "--limit", "200", "--checkpoint-dir", "shared", *args],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    db = StudyDatabase(url, create=False)
    config = db.study_config("c")
    db.dispose()
    assert config.options["checkpoint_dir"] == str(tmp_path / "shared")
    kept = list((tmp_path / "shared" / config.uid / "checkpoints").glob("lineage-*/epoch-*"))
    assert len(kept) == 1  # the best trial's final checkpoint is kept (--keep-checkpoints 3)
    assert not (tmp_path / "c.db.rnnsearch").exists()
    # From another folder, without the option: the stored folder is used.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    more = CliRunner().invoke(app, ["run", "--study", "c", "--add", "1", *args])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["finished"] == 2
    assert not (elsewhere / "shared").exists()
    assert len(list((tmp_path / "shared" / config.uid / "checkpoints").glob("lineage-*"))) == 2
    refused = CliRunner().invoke(
        app, ["run", "--study", "c", "--add", "1", "--checkpoint-dir", "other", *args]
    )
    assert refused.exit_code == 2 and "--checkpoint-dir other" in refused.stderr
