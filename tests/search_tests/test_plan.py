"""Plan resolution (search.plan.resolve_plan): the request meets the stored study, pure."""

from __future__ import annotations

import json

import pytest

from search.errors import UsageError
from search.plan import (
    DEFAULT_KEEP_CHECKPOINTS,
    DEFAULT_TRIALS,
    RunRequest,
    resolve_plan,
    schedule_trials,
)
from spaces import Space
from storage import StudyConfig

SPACE = {"cell": {"choice": ["gru", "lstm"]}, "units": {"low": 4, "high": 8}}
OTHER = {"cell": {"choice": ["gru", "lstm"]}, "units": {"low": 4, "high": 16}, "dropout": 0.2}


def _space(dims: dict = SPACE, name: str = "s") -> Space:
    return Space.from_dict({"name": name, "dimensions": dims})


def _stored(engine: str = "optuna", target: int = 10, **options) -> StudyConfig:
    return StudyConfig(
        name="st",
        study_id=1,
        engine=engine,
        space_name="s",
        space_json=_space().to_json(),
        data={"source": "data.npz", "limit": 500, "options": {"bucketing": True}},
        seed=7,
        target_trials=target,
        options={"max_epochs": 3, "keep_checkpoints": 2, **options},
        uid="11111111-2222-3333-4444-555555555555",
    )


def plan(req: RunRequest, stored: StudyConfig | None = None, finished: int = 0, space=None):
    return resolve_plan(
        req,
        stored,
        exists=stored is not None,
        finished=finished,
        trials_so_far=finished,
        requested_space=space,
    )


def test_new_study_takes_the_request_and_the_defaults():
    p = plan(RunRequest(study="st", data="d.npz", seed=3), space=_space())
    assert (p.engine, p.data, p.seed, p.existing, p.stored) == ("optuna", "d.npz", 3, False, None)
    assert p.target == DEFAULT_TRIALS and p.max_epochs == 5
    assert p.keep_checkpoints == DEFAULT_KEEP_CHECKPOINTS and p.patience is None
    assert p.hyperband is None
    assert p.data_options["bucketing"] is True
    assert p.options()["keep_checkpoints"] == DEFAULT_KEEP_CHECKPOINTS


def test_keep_checkpoints_zero_is_kept_and_negative_refused():
    assert plan(RunRequest(study="st", keep_checkpoints=0)).keep_checkpoints == 0
    assert plan(RunRequest(study="st", keep_checkpoints=0), _stored()).keep_checkpoints == 0
    with pytest.raises(UsageError, match="--keep-checkpoints -1"):
        plan(RunRequest(study="st", keep_checkpoints=-1))


def test_existing_study_keeps_what_it_stored():
    p = plan(RunRequest(study="st"), _stored(), finished=4)
    assert (p.data, p.limit, p.seed, p.max_epochs, p.keep_checkpoints) == ("data.npz", 500, 7, 3, 2)
    assert p.existing and p.uid == "11111111-2222-3333-4444-555555555555"
    # interrupted before its target: first reach it
    assert p.target == 10


@pytest.mark.parametrize(
    ("req", "finished", "target"),
    [
        (RunRequest(study="st", trials=5), 10, 15),  # a finished study: --trials more
        (RunRequest(study="st", add=5), 4, 15),  # --add: on top of the target
        (RunRequest(study="st"), 10, 10 + DEFAULT_TRIALS),
        (RunRequest(study="st", trials=12, resume_only=True), 4, 12),  # resume: in all
        (RunRequest(study="st", add=2, resume_only=True), 4, 12),
        (RunRequest(study="st", resume_only=True), 4, 10),
    ],
)
def test_trials_versus_add(req, finished, target):
    assert plan(req, _stored(), finished=finished).target == target


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (RunRequest(study="st", engine="hyperband"), "mixing engines"),
        (RunRequest(study="st", data="other.npz"), "--data other.npz"),
        (RunRequest(study="st", limit=100), "--limit 100"),
        (RunRequest(study="st", seed=8), "--seed 8"),
        (RunRequest(study="st", bucketing=False), "--no-bucketing"),
        (RunRequest(study="st", checkpoint_dir="/elsewhere"), "--checkpoint-dir /elsewhere"),
        (RunRequest(study="st", hyperband_factor=3), "--factor"),
        (RunRequest(study="st", trials=0), "--trials 0"),
        (RunRequest(study="st", engine="bogus"), "--engine bogus"),
    ],
)
def test_conflicts_with_the_stored_study_are_refused(req, message):
    with pytest.raises(UsageError, match=message):
        plan(req, _stored())


def test_changed_space_is_refused_unless_allowed():
    with pytest.raises(UsageError, match="differs from the space"):
        plan(RunRequest(study="st", space="o.toml"), _stored(), space=_space(OTHER, "o"))
    allowed = plan(
        RunRequest(study="st", space="o.toml", allow_space_change=True),
        _stored(),
        space=_space(OTHER, "o"),
    )
    assert allowed.space.fingerprint == _space(OTHER, "o").fingerprint
    same = plan(RunRequest(study="st", space="s.toml"), _stored(), space=_space())
    assert same.space.fingerprint == _space().fingerprint


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ({"cell": {"choice": ["gru", "simple"]}}, "'cell' is a choice of \\['gru', 'simple'\\]"),
        ({"units": {"choice": [4, 8]}}, "'units' is a choice of \\[4, 8\\], where .* as a range"),
        ({"units": {"low": 4, "high": 8, "log": True}}, "'units' is a log-spaced range"),
    ],
    ids=["choice-values", "range-to-choice", "log-spacing"],
)
def test_an_allowed_space_change_keeps_each_dimensions_kind(dims, message):
    """Optuna keeps one distribution per parameter name within a study: a changed space that
    draws a dimension otherwise is refused before anything is stored (it used to fail at the
    first trial with the new space stored, leaving the study stuck)."""
    with pytest.raises(UsageError, match=message):
        plan(
            RunRequest(study="st", space="o.toml", allow_space_change=True),
            _stored(),
            space=_space({**SPACE, **dims}, "o"),
        )


def test_new_study_refusals():
    with pytest.raises(UsageError, match="to resume"):
        plan(RunRequest(study="st", resume_only=True))
    with pytest.raises(UsageError, match="--add needs an existing study"):
        plan(RunRequest(study="st", add=3))
    for trials, hint in ((0, True), (2, False)):
        with pytest.raises(UsageError, match="not created by rnnsearch") as refused:
            resolve_plan(
                RunRequest(study="my st"),
                None,
                exists=True,
                finished=trials,
                trials_so_far=trials,
                requested_space=None,
            )
        # only an empty study is offered for deletion
        assert ("rnnsearch delete 'my st'" in str(refused.value)) is hint


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (RunRequest(study="st", engine="hyperband", workers=2), "--workers 2"),
        (RunRequest(study="st", engine="hyperband", time_budget=60.0), "--time-budget"),
        (RunRequest(study="st", engine="hyperband", patience=1), "--patience 1"),
        (RunRequest(study="st", engine="hyperband", hyperband_factor=1), "--factor 1"),
        (RunRequest(study="st", engine="hyperband", join_only=True), "cannot join"),
        (RunRequest(study="st", time_budget=float("nan")), "--time-budget"),
    ],
)
def test_engine_options(req, message):
    with pytest.raises(UsageError, match=message):
        plan(req)


def test_hyperband_target_is_its_schedule_or_the_cap():
    p = plan(RunRequest(study="st", engine="hyperband", max_epochs=3, hyperband_factor=3))
    assert p.hyperband.schedule == schedule_trials(3, 3, 1) == 6 and p.target == 6
    assert p.hyperband.max_trials is None and p.hyperband.factor == 3
    capped = plan(RunRequest(study="st", engine="hyperband", max_epochs=3, trials=4))
    assert capped.target == 4 and capped.hyperband.max_trials == 4
    stored = _stored(engine="hyperband", factor=3, hyperband_iterations=1, kt_max_trials=4)
    more = plan(RunRequest(study="st", add=2), stored, finished=4)
    assert more.hyperband.max_trials == 6 and more.target == 6
    with pytest.raises(UsageError, match="its schedule cannot change"):
        plan(RunRequest(study="st", max_epochs=9), stored)
    # the factor and the iterations are the schedule too (they were silently replaced)
    with pytest.raises(UsageError, match="--factor 2: study 'st' runs Hyperband with --factor 3"):
        plan(RunRequest(study="st", hyperband_factor=2), stored)
    with pytest.raises(UsageError, match="--hyperband-iterations 2: .* cannot change"):
        plan(RunRequest(study="st", hyperband_iterations=2), stored)
    same = plan(RunRequest(study="st", hyperband_factor=3, hyperband_iterations=1), stored)
    assert same.hyperband.factor == 3


def test_checkpoint_dir_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = plan(RunRequest(study="st", checkpoint_dir="shared/ck"))
    assert p.checkpoint_dir == str(tmp_path / "shared" / "ck")
    assert p.options()["checkpoint_dir"] == str(tmp_path / "shared" / "ck")
    stored = _stored(checkpoint_dir=str(tmp_path / "shared" / "ck"))
    # the same folder given relatively from the same place is no conflict
    assert plan(RunRequest(study="st", checkpoint_dir="shared/ck"), stored).checkpoint_dir == (
        str(tmp_path / "shared" / "ck")
    )


def test_a_fitted_study_accepts_its_template_and_keeps_its_pruner():
    from spaces import load_space
    from spaces.fit import DataStats, fit_record, fit_space

    template = load_space("default")
    numbers = DataStats("numeric", 216, 9, 7, 15, 21, 24, 26, features=12)
    fitted = fit_space(template, numbers)
    stored = StudyConfig(
        **{
            **_stored().__dict__,
            "space_json": fitted.to_json(),
            "options": {
                "max_epochs": 3,
                "pruner": "halving",
                "space_fit": fit_record(template, numbers),
            },
        }
    )
    p = plan(RunRequest(study="st", space="default"), stored, space=template)
    assert p.space == fitted and p.space_fit == stored.options["space_fit"]
    assert p.pruner == "halving" and p.options()["space_fit"]["stats"]["examples"] == 216
    with pytest.raises(UsageError, match="--space cells: differs"):
        plan(RunRequest(study="st", space="cells"), stored, space=load_space("cells"))
    # cells draws units and the learning rate otherwise than the fitted default: refused even
    # when allowed (Optuna would fail at the first trial)
    with pytest.raises(UsageError, match="'units' is a range of integers, where"):
        plan(
            RunRequest(study="st", space="cells", allow_space_change=True),
            stored,
            space=load_space("cells"),
        )
    tweaked = json.loads(fitted.to_json())
    tweaked["name"] = "tweaked"
    tweaked["dimensions"]["units"]["high"] *= 2  # a range may widen
    changed = plan(
        RunRequest(study="st", space="tweaked.toml", allow_space_change=True, pruner="none"),
        stored,
        space=Space.from_dict(tweaked),
    )
    assert changed.space_fit is None and "space_fit" not in changed.options()
    assert changed.space.fingerprint == Space.from_dict(tweaked).fingerprint
    assert changed.pruner == "none"
    # Studies from before the pruner was stored by name ran the median rule.
    old = _stored(pruner="MedianPruner(n_startup_trials=3, n_warmup_steps=1)")
    assert plan(RunRequest(study="st"), old).pruner == "median"
    assert plan(RunRequest(study="st"), space=_space()).pruner == "median-warmup"


def test_a_run_that_changes_stored_settings_says_which():
    stored = _stored(patience=2, time_budget_s=600.0, backend="jax", pruner="median")
    same = RunRequest(study="st", patience=2, time_budget=600.0, backend="jax", max_epochs=3)
    assert plan(same, stored).changed == ()
    assert plan(RunRequest(study="st"), stored).changed == ()
    changed = plan(
        RunRequest(
            study="st",
            patience=0,
            time_budget=1200.0,
            keep_checkpoints=0,
            backend="tensorflow",
            max_epochs=8,
            pruner="halving",
        ),
        stored,
    ).changed
    assert changed == (
        "--patience none replaces the study's stored 2 from this run on",
        "--time-budget 1200 s replaces the study's stored 600 s from this run on",
        "--keep-checkpoints none replaces the study's stored 2 from this run on",
        "--backend tensorflow replaces the study's stored jax from this run on",
        "--max-epochs 8 replaces the study's stored 3 from this run on",
        "--pruner halving replaces the study's stored median from this run on",
    )
    # a setting the study never stored (a study from before it was stored) is not "changed"
    assert plan(RunRequest(study="st", jit_compile=True), _stored()).changed == ()
    assert plan(RunRequest(study="st", patience=3), _stored()).changed == (
        "--patience 3 replaces the study's stored none from this run on",
    )


def test_no_jit_under_jax_is_refused_not_ignored():
    with pytest.raises(UsageError, match="--no-jit: JAX compiles every training step"):
        plan(RunRequest(study="st", backend="jax", jit_compile=False))
    assert (
        plan(RunRequest(study="st", backend="tensorflow", jit_compile=False)).jit_compile is False
    )
    assert plan(RunRequest(study="st", backend="jax", jit_compile=True)).backend == "jax"
