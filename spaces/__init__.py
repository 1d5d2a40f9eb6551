"""Search spaces over RNN architectures: pure Python, no TensorFlow or Optuna."""

from __future__ import annotations

from spaces.errors import SpaceError
from spaces.loader import builtin_names, load_space, parse_space_text
from spaces.space import (
    KNOWN_DIMENSIONS,
    Choice,
    Condition,
    Dimension,
    Fixed,
    FloatRange,
    IntRange,
    Space,
)

__all__ = [
    "KNOWN_DIMENSIONS",
    "Choice",
    "Condition",
    "Dimension",
    "Fixed",
    "FloatRange",
    "IntRange",
    "Space",
    "SpaceError",
    "builtin_names",
    "load_space",
    "parse_space_text",
]
