"""One space, two engines: Optuna distributions and Keras Tuner hyperparameters mean the same."""

from __future__ import annotations

import pytest

from search.engines import kt_space, optuna_engine
from spaces import Choice, Fixed, FloatRange, IntRange, builtin_names, load_space


def _kt_by_name(space):
    return {p.name: p for p in kt_space.hyperparameters(space).space}


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_space_translates_alike_to_both_engines(name):
    space = load_space(name)
    optuna_form = optuna_engine.distributions(space)
    kt_form = _kt_by_name(space)
    kt_searched = {n for n, p in kt_form.items() if type(p).__name__ != "Fixed"}
    assert set(optuna_form) == kt_searched == {d.name for d in space.searched}
    assert {d.name for d in space.dimensions if isinstance(d, Fixed)} == set(kt_form) - kt_searched
    for dim in space.dimensions:
        hp = kt_form[dim.name]
        kt_kind = type(hp).__name__
        # Conditions: same parent, same values.
        kt_conditions = [(c.name, list(c.values)) for c in hp.conditions]
        if dim.when is None:
            assert kt_conditions == []
        else:
            assert kt_conditions == [(dim.when.parent, list(dim.when.values))]
        if isinstance(dim, Fixed):
            assert kt_kind == "Fixed" and hp.value == dim.value
            continue
        dist, cond = optuna_form[dim.name]
        assert cond == dim.when
        if isinstance(dim, IntRange):
            assert kt_kind == "Int"
            assert (dist.low, dist.high, dist.log) == (
                hp.min_value,
                hp.max_value,
                hp.sampling == "log",
            )
            assert dist.log == dim.log
            # Keras Tuner's log-scale step is multiplicative: a space's step must not reach it.
            assert hp.step == (None if dim.log else dist.step)
        elif isinstance(dim, FloatRange):
            assert kt_kind == "Float"
            assert (dist.low, dist.high) == (hp.min_value, hp.max_value)
            assert dist.log == (hp.sampling == "log") == dim.log
            assert dist.step == hp.step
        else:
            assert isinstance(dim, Choice)
            assert list(dist.choices) == list(dim.values)
            if kt_kind == "Boolean":
                assert sorted(dim.values) == [False, True]
            else:
                assert kt_kind == "Choice" and list(hp.values) == list(dim.values)


@pytest.mark.parametrize("name", builtin_names())
def test_keras_tuner_samples_lie_inside_the_optuna_distributions(name):
    space = load_space(name)
    optuna_form = optuna_engine.distributions(space)
    kt_form = _kt_by_name(space)
    for pname, (dist, _) in optuna_form.items():
        hp = kt_form[pname]
        for seed in range(50):
            value = hp.random_sample(seed)
            if type(hp).__name__ == "Boolean":
                value = bool(value)
            assert dist._contains(dist.to_internal_repr(value)), (pname, value, dist)


def test_conditional_values_come_back_in_the_space_types():
    space = load_space("elman-jordan-bi")
    sampled = kt_space.sampled_values(
        space,
        {"cell": "jordan", "bidirectional": True, "merge_mode": "sum", "maxlen": 100,
         "units": 20, "activation": "relu", "dropout": 0.1, "learning_rate": 1e-3},
    )  # fmt: skip
    assert sampled["bidirectional"] is True and sampled["merge_mode"] == "sum"
    sampled = kt_space.sampled_values(
        space,
        {"cell": "simple", "bidirectional": 0, "merge_mode": "sum", "maxlen": 500,
         "units": 20, "activation": "tanh", "dropout": 0.1, "learning_rate": 1e-3},
    )  # fmt: skip
    # Keras Tuner keeps values of inactive hyperparameters; the space drops them.
    assert sampled["bidirectional"] is False and "merge_mode" not in sampled
