"""One trial's lifecycle (checkpoint, record, replay, recover) under kills, black-box (issue 15).

Real `rnnsearch` subprocesses, SIGKILLed at the named kill points of search.faults, then resumed:

* a cut trial is continued only from its own study's checkpoints: never from those of a study in
  another database file with the same stem, of a study whose name sanitises alike, or of a deleted
  study created again under the same name;
* any sequence of consecutive kills loses at most the epoch in flight (Optuna engine), and a
  Hyperband schedule still finishes each of its trials once;
* a study named `..` writes nothing outside the database's folder and deletes nothing of the
  user's; `retrain`'s default model file stays in the working directory.

The tests assert no artefact layout: they look at the study through `rnnsearch export --format
json` and at the file tree before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from crash_helpers import (
    TINY_SPACE,
    assert_killed,
    assert_ok,
    base_env,
    best,
    chains,
    check_common,
    check_no_checkpointed_epoch_lost,
    curve,
    export,
    inside,
    resumed_at,
    resumed_from,
    rnnsearch,
    run_kill_sequence,
    snapshot,
)

pytestmark = pytest.mark.slow

EPOCHS = 3

#: The first study: GRU/LSTM models of 12-16 units (over 9,000 parameters).
SPACE_BIG = """
name = "big"
[dimensions]
cell = { choice = ["gru", "lstm"] }
units = { low = 12, high = 16 }
maxlen = 30
embedding_dim = 8
vocab_size = 1000
batch_size = 16
"""

#: The second study: a SimpleRNN of 2-3 units (about 8,030 parameters).
SPACE_SMALL = """
name = "small"
[dimensions]
cell = { choice = ["simple"] }
units = { low = 2, high = 3 }
maxlen = 30
embedding_dim = 8
vocab_size = 1000
batch_size = 16
"""


def _data(imdb_npz: Path, limit: int = 200) -> list[str]:
    return ["--data", str(imdb_npz), "--limit", str(limit), "--seed", "5", "--quiet"]


def _space(folder: Path, name: str, text: str) -> str:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return str(path)


# --- 1. another study's model restored and reported as best ------------------------------------


def _delete_with_optuna(storage: str, study: str) -> None:
    import optuna

    optuna.delete_study(study_name=study, storage=storage)


#: (first storage file, first study, second storage file, second study, delete the first study
#: with Optuna's own API before creating the second)
COLLISIONS = {
    "same-stem-other-file": ("a.db", "col", "a.sqlite", "col", False),
    "names-sanitised-alike": ("a.db", "a b", "a.db", "a_b", False),
    "deleted-and-created-again": ("a.db", "col", "a.db", "col", True),
}


@pytest.mark.parametrize("case", list(COLLISIONS))
def test_a_cut_trial_is_never_restored_from_another_studys_checkpoint(tmp_path, imdb_npz, case):
    first_file, first_study, second_file, second_study, delete = COLLISIONS[case]
    d = tmp_path / "d"
    d.mkdir()
    first_url = f"sqlite:///{d / first_file}"
    second_url = f"sqlite:///{d / second_file}"
    env = base_env()
    done = rnnsearch(
        ["run", "--study", first_study, "--space", _space(tmp_path, "big", SPACE_BIG),
         "--trials", "2", "--max-epochs", "2", "--storage", first_url, *_data(imdb_npz)],
        env,
    )  # fmt: skip
    assert_ok(done, "the first study")
    first = export(env, first_study, first_url)
    assert [r["state"] for r in first] == ["complete", "complete"]
    first_counts = {r["param_count"] for r in first}
    if delete:
        _delete_with_optuna(first_url, first_study)
    # The second study's trial 1 is cut as it starts (trial 0 completes first).
    cut_run = rnnsearch(
        ["run", "--study", second_study, "--space", _space(tmp_path, "small", SPACE_SMALL),
         "--trials", "2", "--max-epochs", "2", "--storage", second_url, *_data(imdb_npz)],
        env,
        kill_at="trial-started@2",
    )  # fmt: skip
    assert_killed(cut_run, "the second study's run")
    resumed = rnnsearch(["resume", second_study, "--quiet", "--storage", second_url], env)
    assert_ok(resumed, "resume of the second study")

    rows = export(env, second_study, second_url)
    states = [(r["trial"], r["state"], r["params"]) for r in rows]
    assert sorted(r["state"] for r in rows) == ["complete", "complete", "interrupted"], states
    [cut] = [r for r in rows if r["state"] == "interrupted"]
    [copy] = [r for r in rows if resumed_from(r) == cut["trial"]]
    assert copy["state"] == "complete", copy
    # It had nothing of its own to restore: trained from epoch 0, its own model.
    assert resumed_at(copy) == 0, copy["extra"]
    assert copy["param_count"] is not None and copy["param_count"] not in first_counts, (
        copy["param_count"],
        first_counts,
    )
    # A fresh SimpleRNN of u units on 1,000 x 8 embeddings with a one-unit head.
    units = copy["params"]["units"]
    assert copy["param_count"] == 1000 * 8 + units * (8 + units + 1) + units + 1, copy
    same_config = [
        r for r in rows if r is not copy and r["param_count"] and r["params"] == copy["params"]
    ]
    for other in same_config:
        assert copy["param_count"] == other["param_count"]
    if "fit_seconds" in copy["extra"]:  # it trained (a restored finished model shows 0.0)
        assert copy["extra"]["fit_seconds"] > 0, copy["extra"]
    assert [e for e, _, _ in curve(copy)] == [1, 2]
    # The cut trial was killed as it started: it recorded nothing (no epochs, no model).
    assert cut["trial"] == 1 and curve(cut) == [] and cut["epochs_trained"] == 0, cut
    for r in rows:
        assert r["params"]["cell"] == "simple" and r["params"]["units"] in (2, 3), states
        if r["state"] == "complete":
            assert r["param_count"] not in first_counts, (r["trial"], r["param_count"])
    top = best(env, second_study, second_url)
    assert top["params"]["cell"] == "simple" and top["params"]["units"] in (2, 3), top
    assert top["param_count"] not in first_counts
    if not delete:
        # The first study is untouched by the second.
        again = export(env, first_study, first_url)
        assert [(r["state"], r["value"], curve(r)) for r in again] == [
            (r["state"], r["value"], curve(r)) for r in first
        ]


# --- 2. two kills in a row lose checkpointed epochs ---------------------------------------------


def test_two_kills_in_a_row_keep_the_checkpointed_epochs(tmp_path, imdb_npz):
    """The issue's sequence: killed after epoch 2, the copy killed as it starts, then resumed."""
    env = base_env(f"sqlite:///{tmp_path / 'study.db'}")
    seq = run_kill_sequence(
        env,
        "dk",
        ["--space", _space(tmp_path, "tiny", TINY_SPACE), "--trials", "1",
         "--max-epochs", str(EPOCHS), *_data(imdb_npz)],
        ["after-epoch@2", "trial-started"],
    )  # fmt: skip
    assert [(k.cut, k.recorded) for k in seq.kills] == [(0, 2), (1, 0)]
    by_number = check_common(seq, EPOCHS)
    ancestors = chains(by_number)
    assert ancestors == {2: [0, 1]}
    final = by_number[2]
    assert resumed_at(final) == 2, final["extra"]
    assert curve(final)[:2] == curve(by_number[0])
    check_no_checkpointed_epoch_lost(seq, by_number, ancestors)


# --- 3. a study named `..` ----------------------------------------------------------------------


def test_a_study_named_dotdot_stays_inside_the_database_folder(tmp_path, imdb_npz):
    outer = tmp_path / "outer"
    db_dir = outer / "db"
    work = tmp_path / "work"
    # The user's own folders, named like trial checkpoints (the best one of three is kept).
    mine = [folder / f"trial-{n:05d}" / "mine.txt" for folder in (outer, db_dir) for n in range(3)]
    for path in mine:
        path.parent.mkdir(parents=True)
        path.write_text("the user's file")
    work.mkdir()
    url = f"sqlite:///{db_dir / 'study.db'}"
    env = base_env()
    space = _space(tmp_path, "tiny", TINY_SPACE)
    before = snapshot(tmp_path)
    done = rnnsearch(
        ["run", "--study", "..", "--space", space, "--trials", "3", "--max-epochs", "1",
         "--keep-checkpoints", "1", "--storage", url, *_data(imdb_npz)],
        env,
    )  # fmt: skip
    assert_ok(done, "run --study ..")
    after = snapshot(tmp_path)
    lost = [str(p) for p in mine if not p.is_file() or p.read_text() != "the user's file"]
    assert not lost, f"the run deleted or changed the user's files {lost}"
    assert before <= after, f"the run deleted {sorted(map(str, before - after))}"
    outside = [p for p in after - before if not inside(tmp_path / p, db_dir)]
    assert not outside, f"written outside the database's folder: {sorted(map(str, outside))}"
    rows = export(env, "..", url)
    assert sorted(r["state"] for r in rows) == ["complete"] * 3

    # retrain without --save writes its model into the study's artefact folder (named by its
    # identity, beside the database), nowhere else.
    before = snapshot(tmp_path)
    retrained = rnnsearch(
        ["retrain", "..", "--epochs", "1", "--limit", "200", "--storage", url], env, cwd=work
    )
    assert_ok(retrained, "retrain ..")
    new = snapshot(tmp_path) - before
    models = [p for p in new if p.suffix == ".keras"]
    assert len(models) == 1 and inside(tmp_path / models[0], db_dir / "study.db.rnnsearch"), sorted(
        map(str, new)
    )
    stray = [p for p in new if not (inside(tmp_path / p, work) or inside(tmp_path / p, db_dir))]
    assert not stray, sorted(map(str, stray))


def test_retrain_default_path_does_not_follow_dotdot_in_a_study_name(tmp_path, imdb_npz):
    db_dir = tmp_path / "db"
    work = tmp_path / "a" / "work"
    db_dir.mkdir()
    work.mkdir(parents=True)
    url = f"sqlite:///{db_dir / 'study.db'}"
    env = base_env()
    space = _space(tmp_path, "tiny", TINY_SPACE)
    done = rnnsearch(
        ["run", "--study", "../up", "--space", space, "--trials", "1", "--max-epochs", "1",
         "--storage", url, *_data(imdb_npz)],
        env,
    )  # fmt: skip
    if done.returncode == 2:
        # Refusing such a name is fine too, with one line that names it.
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnnsearch: error:") and "../up" in lines[0]
        return
    assert_ok(done, "run --study ../up")
    before = snapshot(tmp_path)
    retrained = rnnsearch(
        ["retrain", "../up", "--epochs", "1", "--limit", "200", "--storage", url], env, cwd=work
    )
    assert_ok(retrained, "retrain ../up")
    new = snapshot(tmp_path) - before
    models = [p for p in new if p.suffix == ".keras"]
    assert len(models) == 1, sorted(map(str, new))
    # The default model file lives in the study's artefact folder, named by the study's
    # identity (never by its name): beside the database, whatever the working folder.
    saved = tmp_path / models[0]
    assert inside(saved, db_dir / "study.db.rnnsearch"), f"saved outside the artefacts: {saved}"
    assert "up" not in saved.relative_to(db_dir).as_posix().replace("study.db", "")


# --- the crash table: consecutive kills ---------------------------------------------------------

#: Each sequence: the kill point of `run`, then of each `resume`; a clean `resume` follows; and
#: the study's number of trials (two where a kill needs a trial after the first).
#: (The issue's own sequence, after-epoch@2 then trial-started, is the reproduction test above.)
OPTUNA_SEQUENCES = [
    (["after-checkpoint@2", "trial-started"], 1),
    (["after-checkpoint@2", "after-checkpoint@1"], 1),
    (["after-epoch@2", "after-epoch@1", "after-epoch@1"], 2),
    (["trial-started", "trial-started"], 1),
    (["after-epoch@2", "trial-finished@1"], 2),
    (["after-checkpoint@1", "between-trials@1", "after-epoch@3"], 2),
]


@pytest.mark.parametrize(
    ("points", "trials"), [pytest.param(p, n, id=",".join(p)) for p, n in OPTUNA_SEQUENCES]
)
def test_consecutive_kills_optuna(tmp_path, imdb_npz, points, trials):
    env = base_env(f"sqlite:///{tmp_path / 'study.db'}")
    seq = run_kill_sequence(
        env,
        "crash",
        ["--space", _space(tmp_path, "tiny", TINY_SPACE), "--trials", str(trials),
         "--max-epochs", str(EPOCHS), *_data(imdb_npz)],
        points,
    )  # fmt: skip
    by_number = check_common(seq, EPOCHS)
    assert seq.summary["target"] == trials
    cut = [k.cut for k in seq.kills if k.cut is not None]
    interrupted = sorted(n for n, r in by_number.items() if r["state"] == "interrupted")
    # Exactly the trials the kills cut are interrupted.
    assert interrupted == sorted(cut), ([(k.point, k.cut) for k in seq.kills], interrupted)
    ancestors = chains(by_number)
    check_no_checkpointed_epoch_lost(seq, by_number, ancestors)
    for k in seq.kills:
        if k.cut is not None and k.point.startswith("after-checkpoint"):
            end = next(e for e, anc in ancestors.items() if k.cut in anc)
            assert resumed_at(by_number[end]) > k.recorded, (k, by_number[end]["extra"])


#: Hyperband's schedule for --max-epochs 3 --factor 3 has 6 trials; the tests cap it at 4.
HB_TRIALS = 4
HB_SEQUENCES = [
    ["after-epoch@2", "after-epoch@2"],
    ["trial-started@2", "trial-finished@1"],
    ["trial-finished@2", "after-epoch@1"],
]


def _check_hyperband(seq: Any, by_number: dict[int, dict[str, Any]]) -> None:
    rows = list(by_number.values())
    complete = [r for r in rows if r["state"] == "complete"]
    interrupted = [r for r in rows if r["state"] == "interrupted"]
    states = [(r["trial"], r["state"]) for r in rows]
    # The first bracket in full (3 one-epoch trials, then the best warm-started to 3 epochs).
    assert len(complete) == seq.summary["target"] == HB_TRIALS, states
    assert not [r for r in rows if r["state"] not in ("complete", "interrupted")], states
    # At most the cut trials are interrupted.
    assert {r["trial"] for r in interrupted} <= {k.cut for k in seq.kills}, states
    kt_ids = [r["extra"]["kt_trial_id"] for r in complete]
    assert len(kt_ids) == len(set(kt_ids)), f"a schedule trial counted twice: {kt_ids}"
    for r in interrupted:
        # The cut trial ran again and finished once.
        assert kt_ids.count(r["extra"]["kt_trial_id"]) == 1, (r["trial"], kt_ids)
    for r in complete:
        assert r["epochs_trained"] == r["extra"]["final_epoch"], r
    for r in rows:
        origin = resumed_from(r)
        if origin is not None:
            assert by_number[origin]["state"] == "interrupted", (r["trial"], origin)
            assert by_number[origin]["extra"].get("kt_trial_id") == r["extra"]["kt_trial_id"]
            # One runner for both engines: a Hyperband copy also continues from the lineage's
            # checkpoint, losing no recorded (hence checkpointed) epoch.
            assert r["extra"].get("resumed_at_epoch", 0) >= by_number[origin]["epochs_trained"], (
                r["trial"],
                origin,
            )
    copies = [resumed_from(r) for r in rows if resumed_from(r) is not None]
    assert len(copies) == len(set(copies)), copies


@pytest.mark.parametrize("points", HB_SEQUENCES, ids=lambda p: ",".join(p))
def test_consecutive_kills_hyperband(tmp_path, imdb_npz, points):
    env = base_env(f"sqlite:///{tmp_path / 'study.db'}")
    seq = run_kill_sequence(
        env,
        "hb",
        ["--space", _space(tmp_path, "tiny", TINY_SPACE), "--engine", "hyperband",
         "--max-epochs", str(EPOCHS), "--factor", "3", "--trials", str(HB_TRIALS),
         *_data(imdb_npz)],
        points,
    )  # fmt: skip
    by_number = check_common(seq, EPOCHS)
    _check_hyperband(seq, by_number)
    assert best(env, "hb")["state"] == "complete"
