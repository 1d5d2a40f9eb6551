"""The Optuna engine: a Space as Optuna distributions, TPE sampling and median pruning."""

from __future__ import annotations

from typing import Any

import optuna

from spaces import Choice, Fixed, FloatRange, IntRange, Space

ENGINE = "optuna"


def distributions(space: Space) -> dict[str, tuple[optuna.distributions.BaseDistribution, Any]]:
    """Each searched dimension as (Optuna distribution, condition or None), in space order."""
    out: dict[str, tuple[optuna.distributions.BaseDistribution, Any]] = {}
    for dim in space.searched:
        if isinstance(dim, IntRange):
            dist: optuna.distributions.BaseDistribution = optuna.distributions.IntDistribution(
                dim.low, dim.high, log=dim.log, step=dim.step
            )
        elif isinstance(dim, FloatRange):
            dist = optuna.distributions.FloatDistribution(
                dim.low, dim.high, log=dim.log, step=dim.step
            )
        elif isinstance(dim, Choice):
            dist = optuna.distributions.CategoricalDistribution(list(dim.values))
        else:  # pragma: no cover - Fixed is not searched
            continue
        out[dim.name] = (dist, dim.when)
    return out


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Sample every active searched dimension; conditions see values sampled before them."""
    sampled: dict[str, Any] = {}
    for dim in space.dimensions:
        if not space.is_active(dim, sampled):
            continue
        if isinstance(dim, Fixed):
            sampled[dim.name] = dim.value
        elif isinstance(dim, IntRange):
            sampled[dim.name] = trial.suggest_int(
                dim.name, dim.low, dim.high, step=dim.step, log=dim.log
            )
        elif isinstance(dim, FloatRange):
            if dim.step is not None:
                sampled[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, step=dim.step)
            else:
                sampled[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Choice):
            sampled[dim.name] = trial.suggest_categorical(dim.name, list(dim.values))
    return {d.name: sampled[d.name] for d in space.searched if d.name in sampled}


def make_sampler(seed: int | None, n_startup_trials: int = 5) -> optuna.samplers.BaseSampler:
    # group=True lets multivariate TPE model conditional dimensions (merge_mode, activation).
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, multivariate=True, group=True
    )


def make_pruner(n_startup_trials: int = 3, n_warmup_steps: int = 1) -> optuna.pruners.BasePruner:
    # A trial is stopped once its validation accuracy falls below the median of earlier trials
    # at the same epoch; the first epoch is never judged, it says too little.
    return optuna.pruners.MedianPruner(
        n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps
    )
