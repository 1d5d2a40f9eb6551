"""A Space as Keras Tuner hyperparameters, with the same meaning as its Optuna form.

Bounds are inclusive in both libraries. A log range becomes ``sampling="log"`` with no step:
Keras Tuner reads an integer step under log sampling as a multiplicative factor, which a space's
additive step never means (spaces refuse log with a step > 1, as Optuna does). Conditions become
``parent_name``/``parent_values``. A choice of exactly ``[false, true]`` becomes ``Boolean``:
Keras Tuner's ``Choice`` turns booleans into the integers 0 and 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spaces import Choice, Fixed, FloatRange, IntRange, Space


def hyperparameters(space: Space) -> Any:
    """Every dimension of ``space`` registered, in order, on a new ``HyperParameters``."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for dim in space.dimensions:
        cond: dict[str, Any] = {}
        if dim.when is not None:
            cond = {"parent_name": dim.when.parent, "parent_values": list(dim.when.values)}
        if isinstance(dim, Fixed):
            hp.Fixed(dim.name, dim.value, **cond)
        elif isinstance(dim, IntRange):
            hp.Int(
                dim.name,
                dim.low,
                dim.high,
                step=None if dim.log else dim.step,
                sampling="log" if dim.log else "linear",
                **cond,
            )
        elif isinstance(dim, FloatRange):
            hp.Float(
                dim.name,
                dim.low,
                dim.high,
                step=dim.step,
                sampling="log" if dim.log else "linear",
                **cond,
            )
        elif isinstance(dim, Choice):
            if sorted(dim.values, key=str) == [False, True] and all(
                isinstance(v, bool) for v in dim.values
            ):
                hp.Boolean(dim.name, default=bool(dim.values[0]), **cond)
            else:
                hp.Choice(dim.name, list(dim.values), default=dim.values[0], **cond)
    return hp


def sampled_values(space: Space, values: Mapping[str, Any]) -> dict[str, Any]:
    """The active searched dimensions' values from a Keras Tuner trial, in the space's types."""
    out: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    for dim in space.dimensions:
        if not space.is_active(dim, resolved):
            continue
        if isinstance(dim, Fixed):
            resolved[dim.name] = dim.value
            continue
        value = values[dim.name]
        if isinstance(dim, IntRange):
            value = int(value)
        elif isinstance(dim, FloatRange):
            value = float(value)
        elif isinstance(dim, Choice) and all(isinstance(v, bool) for v in dim.values):
            value = bool(value)
        resolved[dim.name] = value
        out[dim.name] = value
    return out
