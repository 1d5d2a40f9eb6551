"""Optuna's pruners a study may use, by name (`run --pruner`; the name is stored with the study).

Why several: the plain median rule judged every trial after its first epoch, and on a multi-class
task half of the first trials (slow starters, low learning rates) were ended at the majority-class
accuracy. The candidates below were compared with ``bench/pruners.py`` on two tasks
(docs/default-space.md) and the default (search.plan.DEFAULT_PRUNER) chosen by that measurement.
"""

from __future__ import annotations

from typing import Any

#: Each pruner's rule in words, stored with the study beside its name.
RULES: dict[str, str] = {
    "median": "MedianPruner(n_startup_trials=3, n_warmup_steps=1): below the median of earlier "
    "trials at the same epoch, from epoch 1",
    "median-warmup": "MedianPruner(n_startup_trials=5, n_warmup_steps=2): below the median, "
    "judged from epoch 2 once 5 trials finished",
    "patient": "PatientPruner(MedianPruner(n_startup_trials=3, n_warmup_steps=1), patience=1): "
    "below the median and no better than its previous best epoch",
    "halving": "SuccessiveHalvingPruner(min_resource=2, reduction_factor=3): asynchronous "
    "successive halving from epoch 2, the top third goes on",
    "none": "NopPruner: every trial runs its epochs",
}


def pruner_description(name: str) -> str:
    return RULES.get(name, name)


def make_pruner(name: str) -> Any:
    """The Optuna pruner of that name (one of RULES)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "median-warmup":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "patient":
        # PatientPruner asks the median rule only once a trial has stopped improving for
        # `patience` epochs: a slow starter that still climbs is not judged yet.
        return optuna.pruners.PatientPruner(
            optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1), patience=1
        )
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; expected one of {', '.join(RULES)}")
