"""Where rnnsearch's caches live on the user's machine: one rule for every cache.

A cache has its own environment variable naming its folder (``RNNSEARCH_CACHE`` for prepared
data, ``RNNSEARCH_COMPILE_CACHE`` for compiled steps); ``off`` (or ``0``, ``false``, ``no``,
``none``, or empty) turns it off; unset, it is ``$XDG_CACHE_HOME/rnnsearch/<leaf>``
(``~/.cache/rnnsearch/<leaf>``). Nothing here creates a folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

OFF_VALUES = ("off", "0", "false", "no", "none", "")


def is_off(variable: str, environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(variable)
    return value is not None and value.strip().lower() in OFF_VALUES


def folder(variable: str, leaf: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder ``variable`` names, else the default one for ``leaf``; None when off."""
    environ = os.environ if environ is None else environ
    if is_off(variable, environ):
        return None
    chosen = environ.get(variable)
    if chosen:
        return Path(chosen.strip()).expanduser()
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "rnnsearch" / leaf
