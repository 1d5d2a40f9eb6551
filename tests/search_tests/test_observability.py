"""Seeing a run: log lines, Optuna user attributes, TensorBoard, workers' GPUs, --version, the
Python API and Ctrl-C (issue 20)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli import app

SPACE = """
[dimensions]
cell = { choice = ["gru", "simple"] }
units = { low = 4, high = 8 }
maxlen = 40
embedding_dim = 8
vocab_size = 1000
batch_size = 16
"""

EPOCH_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d rnnsearch: trial (\d+) epoch (\d+)/(\d+): "
    r"loss [\d.]+ accuracy [\d.]+ val_loss [\d.]+ val_accuracy [\d.]+; trial \S+, run \S+"
)
TRIAL_LINE = re.compile(
    r"^\S+ \S+ rnnsearch: trial (\d+) (complete|pruned|failed)( val_accuracy [\d.]+)? in \S+; "
    r"(\d+)/(\d+) finished"
)


# -- conventions ------------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata():
    expected = f"rnnsearch {metadata.version('rnnsearch')}"
    for flag in ("--version", "-V"):
        out = CliRunner().invoke(app, [flag])
        assert out.exit_code == 0
        assert out.stdout.strip() == expected


def test_help_wraps_to_80_columns_and_keeps_option_names_whole():
    out = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "80"})
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for option in ("--hyperband-iterations", "--keep-checkpoints", "--tensorboard", "--progress"):
        assert any(option in line for line in lines), option


def test_debug_is_one_option_for_every_command(tmp_path: Path):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    plain = CliRunner().invoke(app, ["best", "x", "--storage", missing])
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    debug = CliRunner().invoke(app, ["--debug", "best", "x", "--storage", missing])
    # --debug re-raises the error for a traceback instead of the one line.
    assert debug.exception is not None and not isinstance(debug.exception, SystemExit)
    os.environ.pop("RNNSEARCH_DEBUG", None)


# -- GPUs for workers -------------------------------------------------------------------------


def _fake_nvidia_smi(folder: Path, gpus: int) -> str:
    """A stand-in for nvidia-smi that lists ``gpus`` GPUs as `nvidia-smi -L` does."""
    tool = folder / "nvidia-smi"
    listing = "\n".join(f"GPU {i}: NVIDIA H100 (UUID: GPU-{i:08d})" for i in range(gpus))
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}\nEOF\n")
    tool.chmod(0o755)
    return str(folder)


def test_each_worker_gets_its_gpu_round_robin_with_memory_growth(tmp_path: Path):
    from search.workers import worker_environments

    path = _fake_nvidia_smi(tmp_path, 2)
    envs = worker_environments(3, {"PATH": path})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0"]
    assert all(e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for e in envs)
    # --backend jax grows its GPU memory too instead of taking 75% up front
    assert all(e["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for e in envs)
    assert [e["RNNSEARCH_WORKER_INDEX"] for e in envs] == ["1", "2", "3"]
    # The GPUs a user made visible are the ones shared out.
    envs = worker_environments(2, {"PATH": path, "CUDA_VISIBLE_DEVICES": "3,5"})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["3", "5"]
    # No GPU (no nvidia-smi, or none made visible): nothing GPU-related is set.
    for environ in ({"PATH": str(tmp_path / "empty")}, {"PATH": path, "CUDA_VISIBLE_DEVICES": ""}):
        for env in worker_environments(2, environ):
            assert env.get("CUDA_VISIBLE_DEVICES", "") == environ.get("CUDA_VISIBLE_DEVICES", "")
            assert "TF_FORCE_GPU_ALLOW_GROWTH" not in env
            assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in env


def test_spawned_worker_processes_see_their_gpu(tmp_path: Path, monkeypatch):
    """spawn_workers itself: each real child process reports the environment it got."""
    import optuna

    from search import workers
    from search.trials import SilentObserver
    from storage import StudyDatabase

    db = StudyDatabase(f"sqlite:///{tmp_path / 'g.db'}")
    optuna.create_study(study_name="g", storage=db.optuna_storage)
    report = (
        "import json, os, sys; keys = ('CUDA_VISIBLE_DEVICES', 'TF_FORCE_GPU_ALLOW_GROWTH', "
        "'RNNSEARCH_WORKER_INDEX', 'RNNSEARCH_STORAGE'); "
        "open(os.path.join(sys.argv[1], os.environ['RNNSEARCH_WORKER_INDEX']), 'w')"
        ".write(json.dumps({k: os.environ.get(k) for k in keys}))"
    )
    monkeypatch.setattr(
        workers,
        "worker_command",
        lambda study, progress="off", tensorboard=None: [
            sys.executable,
            "-c",
            report,
            str(tmp_path),
        ],
    )
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, 2) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    try:
        workers.spawn_workers(db, "g", 3, SilentObserver())
    finally:
        db.dispose()
    seen = [json.loads((tmp_path / str(i)).read_text()) for i in (1, 2, 3)]
    assert [s["CUDA_VISIBLE_DEVICES"] for s in seen] == ["0", "1", "0"]
    assert {s["TF_FORCE_GPU_ALLOW_GROWTH"] for s in seen} == {"true"}
    assert {s["RNNSEARCH_STORAGE"] for s in seen} == {db.url}


# -- Ctrl-C in a notebook ---------------------------------------------------------------------


def test_second_ctrl_c_raises_instead_of_ending_the_process():
    from search.trials import InterruptGuard

    before = signal.getsignal(signal.SIGINT)
    caught = 0
    with InterruptGuard(hard_abort=False):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.pthread_kill(signal.pthread_self(), 0)  # let the handler run
        except KeyboardInterrupt:
            caught += 1
            try:  # the clean-up after the first is interrupted again: still no os._exit
                os.kill(os.getpid(), signal.SIGINT)
                signal.pthread_kill(signal.pthread_self(), 0)
            except KeyboardInterrupt:
                caught += 1
    assert caught == 2
    assert signal.getsignal(signal.SIGINT) is before


# -- a real search through the Python API -----------------------------------------------------


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, imdb_npz):
    """Two trials of up to 2 epochs on 200 reviews, run in-process through search.api, with
    TensorBoard logs and log lines captured."""
    import io
    from contextlib import redirect_stderr

    from search import api

    tmp = tmp_path_factory.mktemp("api")
    (tmp / "s.toml").write_text(SPACE)
    url = f"sqlite:///{tmp / 'api.db'}"
    err = io.StringIO()
    with redirect_stderr(err):
        summary = api.run(
            "nb",
            storage=url,
            space=str(tmp / "s.toml"),
            data=str(imdb_npz),
            limit=200,
            trials=2,
            max_epochs=2,
            seed=3,
            tensorboard=str(tmp / "tb"),
            progress="log",
        )
    return {"summary": summary, "url": url, "tmp": tmp, "stderr": err.getvalue()}


def test_api_runs_and_queries_a_study(api_run):
    from search import api

    summary, url = api_run["summary"], api_run["url"]
    assert summary.finished == 2 and summary.ran == 2
    top = api.best("nb", storage=url, top=5)
    assert [t.number for t in top] == sorted(
        (t.number for t in top), key=lambda n: -next(x.value for x in top if x.number == n)
    )
    assert top[0].value == summary.best.value
    every = api.trials("nb", storage=url)
    assert len(every) == 2 and all(t.state in ("complete", "pruned") for t in every)
    curve = api.epochs("nb", top[0].number, storage=url)
    assert len(curve) == top[0].epochs and all(e.val_accuracy is not None for e in curve)
    assert [s.name for s in api.studies(storage=url)] == ["nb"]
    assert api.trials("nb", storage=url, where="cell=gru") == [
        t for t in every if t.params["cell"] == "gru"
    ]


def test_api_refuses_unknown_options_in_one_line(tmp_path: Path):
    from search import api
    from search.errors import UsageError

    with pytest.raises(UsageError, match="max_epoch: not an option of run"):
        api.run("x", storage=f"sqlite:///{tmp_path / 'x.db'}", max_epoch=3)
    assert not (tmp_path / "x.db").exists()


def test_log_lines_one_per_epoch_and_per_trial(api_run):
    from search import api

    lines = api_run["stderr"].splitlines()
    epochs = [EPOCH_LINE.match(line) for line in lines]
    seen = sorted((int(m[1]), int(m[2])) for m in epochs if m)
    recorded = sorted(
        (t.number, e)
        for t in api.trials("nb", storage=api_run["url"])
        for e in range(1, t.epochs + 1)
    )
    assert seen == recorded
    finished = [TRIAL_LINE.match(line) for line in lines]
    assert [(int(m[1]), int(m[4]), int(m[5])) for m in finished if m] == [(0, 1, 2), (1, 2, 2)]
    # The time left is estimated once a trial's pace is known.
    assert any("left (target 2 trials)" in line for line in lines if EPOCH_LINE.match(line))
    assert not any("retracing" in line for line in lines)


def test_user_attributes_reach_optuna(api_run):
    import optuna

    from search import api

    study = optuna.load_study(study_name="nb", storage=api_run["url"])
    ours = {t.number: t for t in api.trials("nb", storage=api_run["url"])}
    for trial in study.trials:
        attrs, rec = trial.user_attrs, ours[trial.number]
        curve = api.epochs("nb", trial.number, storage=api_run["url"])
        assert attrs["epoch_loss"] == pytest.approx([e.loss for e in curve], abs=1e-5)
        assert attrs["epoch_accuracy"] == pytest.approx([e.accuracy for e in curve], abs=1e-5)
        assert len(attrs["epoch_val_accuracy"]) == rec.epochs
        assert attrs["param_count"] == rec.param_count > 0
        assert attrs["wall_seconds"] == pytest.approx(rec.duration_s, abs=0.01)


def test_test_metrics_become_user_attributes(api_run):
    import optuna

    from storage import StudyDatabase

    db = StudyDatabase(api_run["url"], create=False, read_only=False)
    try:
        trial = db.trials("nb")[0]
        db.record_test_metrics(trial.trial_id, loss=0.5, accuracy=0.75)
        db.record_test_metrics(trial.trial_id, loss=0.4, accuracy=0.8)  # replaced, not doubled
    finally:
        db.dispose()
    attrs = optuna.load_study(study_name="nb", storage=api_run["url"]).trials[0].user_attrs
    assert (attrs["test_loss"], attrs["test_accuracy"]) == (0.4, 0.8)


def test_tensorboard_event_files_per_trial(api_run):
    root = api_run["tmp"] / "tb" / "nb"
    assert sorted(p.name for p in root.iterdir()) == ["trial-0000", "trial-0001"]
    for run in root.iterdir():
        assert list((run / "train").glob("events.out.tfevents.*"))
        assert list((run / "validation").glob("events.out.tfevents.*"))


def test_interrupted_run_says_what_finished_and_how_to_continue(api_run, capsys):
    from search.cli import _interrupted
    from search.plan import RunRequest

    _interrupted(RunRequest(study="nb", storage=api_run["url"]))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("rnnsearch: study nb: 2/2 trials finished")
    assert err[1].startswith("rnnsearch: best so far: trial ")
    assert err[2].startswith("rnnsearch: continue with: rnnsearch resume nb --storage sqlite:///")


# -- lines reach a log file while the run goes on ----------------------------------------------


@pytest.mark.slow
def test_log_lines_are_flushed_while_running(tmp_path: Path, imdb_npz):
    (tmp_path / "s.toml").write_text(SPACE)
    env = {**os.environ, "RNNSEARCH_STORAGE": f"sqlite:///{tmp_path / 'f.db'}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            "run",
            "--study",
            "f",
            "--space",
            str(tmp_path / "s.toml"),
            "--data",
            str(imdb_npz),
            "--limit",
            "200",
            "--trials",
            "3",
            "--max-epochs",
            "2",
            "--seed",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if EPOCH_LINE.match(line):
                # The first epoch's line arrived while the search still runs (2 more trials).
                assert proc.poll() is None
                break
        else:
            pytest.fail("no epoch line")
        rest = proc.stderr.read()
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len([x for x in rest.splitlines() if TRIAL_LINE.match(x)]) == 3


def test_trials_shows_queued_parameters_of_waiting_trials(tmp_path: Path):
    import optuna

    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = optuna.create_study(study_name="q", storage=url, direction="maximize")
    study.enqueue_trial({"units": 5, "cell": "gru"})
    del study
    out = CliRunner().invoke(app, ["trials", "q", "--format", "json", "--storage", url])
    assert out.exit_code == 0, out.output
    [waiting] = json.loads(out.stdout)
    assert waiting["state"] == "waiting"
    assert waiting["params"] == {"cell": "gru", "units": 5}


def test_best_without_a_finished_trial_says_so(tmp_path: Path):
    import optuna

    url = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(study_name="e", storage=url).enqueue_trial({"units": 5})
    out = CliRunner().invoke(app, ["best", "e", "--storage", url])
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        "rnnsearch: study e has no finished trial yet (1 waiting); `rnnsearch trials e` lists them"
    )


def test_tensorboard_folders_never_leave_the_chosen_folder(tmp_path: Path):
    from search.trials import tensorboard_callback

    for study, folder in (("..", "__"), ("a/b", "a_b"), ("x y", "x_y"), ("imdb-1.v2", "imdb-1.v2")):
        callback = tensorboard_callback(str(tmp_path), study, 3)
        assert Path(callback.log_dir) == tmp_path / folder / "trial-0003"


def test_trials_shows_a_running_trials_value_so_far(tmp_path: Path):
    import optuna

    from storage import StudyDatabase

    url = f"sqlite:///{tmp_path / 'r.db'}"
    db = StudyDatabase(url)
    try:
        study = optuna.create_study(study_name="r", storage=db.optuna_storage)
        trial = study.ask()
        study_id = db.study_id("r")
        db.record_trial_info(
            trial_id=trial._trial_id, study_id=study_id, number=trial.number, engine="optuna",
            config={"cell": "gru"}, status="running",
        )  # fmt: skip
        for epoch, value in ((1, 0.61), (2, 0.74), (3, 0.70)):
            db.record_epoch(
                trial_id=trial._trial_id, study_id=study_id, epoch=epoch,
                metrics={"loss": 0.6, "val_accuracy": value}, seconds=1.0,
            )  # fmt: skip
    finally:
        db.dispose()
    out = CliRunner().invoke(app, ["trials", "r", "--format", "json", "--storage", url])
    assert out.exit_code == 0, out.output
    [running] = json.loads(out.stdout)
    assert running["state"] == "running" and running["epochs"] == 3
    assert running["value"] == pytest.approx(0.74)


def test_time_left_counts_trials_workers_and_the_budget():
    from search.progress import Pace, duration_text

    pace = Pace(target=10, finished=4, workers=2, trial_seconds=[50.0, 70.0])
    assert pace.left_s() == pytest.approx(6 * 60 / 2)
    # A budget of 300 s with 120 s spent: at most the rest shared by 2 workers (a trial running
    # when it runs out ends after its epoch).
    pace.budget_s = 300.0
    assert pace.left_s() == pytest.approx((300 - 120) / 2)
    assert "left (target 10 trials or budget 5m00s)" in pace.left_text()
    # A trial running for 40 s, its epochs 15 s: its time counts, plus one epoch at most.
    pace.trial_started = time.perf_counter() - 40.0
    pace.epoch_seconds = [15.0, 15.0]
    assert pace.left_s() == pytest.approx((300 - 120 - 40) / 2 + 15, abs=0.5)
    # Before any trial finished: the running trial's epochs at full length.
    early = Pace(target=3, epoch_seconds=[10.0, 14.0], trial_epochs=4)
    assert early.mean_trial_s() == pytest.approx(48.0)
    assert [duration_text(s) for s in (5, 125, 3700)] == ["5s", "2m05s", "1h01m"]


def test_live_display_shows_each_worker_and_the_time_left():
    import io

    from rich.console import Console

    from search.progress import RichObserver, WorkerRow

    screen = io.StringIO()
    observer = RichObserver(console=Console(file=screen, width=100, force_terminal=False))
    observer.study_ready("w", 0, 4, False)
    observer.time_budget(None, 0.0, 2)
    observer.workers_status(
        [WorkerRow("worker 1", 2, 1, 3), WorkerRow("worker 2", 3, 0, 3)], 2, [30.0, 50.0]
    )
    observer.close()
    text = screen.getvalue()
    assert "worker 1: trial 2" in text and "1/3" in text
    assert "worker 2: trial 3" in text and "0/3" in text
    assert "2/4" in text and "~40s left" in text  # 2 trials of 40 s on 2 workers


def test_started_line_shows_sampled_floats_as_tables_do():
    import io

    from search.progress import LogObserver

    out = io.StringIO()
    LogObserver(out).trial_started(
        4,
        {
            "cell": "gru",
            "dropout": 0.41802027941768827,
            "learning_rate": 0.00027305366,
            "epochs": 5,
        },
        5,
    )
    line = out.getvalue().strip()
    assert line.endswith(
        "trial 4 started (up to 5 epochs): cell=gru dropout=0.418 learning_rate=0.0002731"
    ), line
