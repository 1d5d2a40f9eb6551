"""Checks of command-line values, run before anything is opened or created.

Pure Python (no TensorFlow, no Optuna): each function returns the checked value or raises
:class:`~search.errors.UsageError` whose one-line message names the option, says what was
expected and shows what was got.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

from search.errors import UsageError

#: Longest study name accepted (Optuna stores names in a VARCHAR(512); keep well inside it).
MAX_STUDY_NAME = 200
#: Seeds seed NumPy, TensorFlow and Optuna's samplers (NumPy accepts 0 <= seed < 2**32); the
#: study database stores them as SQL INTEGER, which PostgreSQL holds in 32 signed bits.
MAX_SEED = 2**31
#: Upper bounds of counts: far above any real use, low enough to stay inside a 32-bit column
#: and to refuse a typo such as 99999999999999999999.
COUNT_LIMITS: dict[str, int] = {
    "--trials": 10**6,
    "--add": 10**6,
    "--limit": 10**9,
    "--max-epochs": 10**5,
    "--top": 10**6,
    "--workers": 1024,
    "--epochs": 10**5,
    "--factor": 1000,
    "--hyperband-iterations": 1000,
    "--patience": 10**5,
    "--keep-checkpoints": 10**6,
}
#: The longest --time-budget accepted: ten years.
MAX_DURATION_S = 10 * 365 * 24 * 3600.0


def _shown(text: str, limit: int = 60) -> str:
    """A value as it may appear in a one-line message: repr, cut to ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "...'"


def check_study_name(name: str, option: str = "--study") -> str:
    """A study name: non-empty, at most MAX_STUDY_NAME characters, no control characters.

    Names such as ``..`` or ``a/b`` are fine: nothing on disk is named after a study.
    """
    if not name or not name.strip():
        raise UsageError(f"{option} {name!r}: expected a non-empty study name")
    if len(name) > MAX_STUDY_NAME:
        raise UsageError(
            f"{option} {_shown(name)}: expected a study name of at most {MAX_STUDY_NAME} "
            f"characters, got {len(name)}"
        )
    for i, ch in enumerate(name):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise UsageError(
                f"{option} {_shown(name)}: expected a study name without control characters, "
                f"got {ch!r} at position {i + 1}"
            )
    return name


def check_seed(seed: int | None, option: str = "--seed") -> int | None:
    """A seed in 0 <= seed < MAX_SEED, or None."""
    if seed is None:
        return None
    if not 0 <= seed < MAX_SEED:
        raise UsageError(f"{option} {seed}: expected an integer from 0 to {MAX_SEED - 1}")
    return seed


def check_count(option: str, value: int | None, *, zero_means: str | None = None) -> int | None:
    """A positive count at most its bound; with ``zero_means``, 0 is allowed and means that."""
    if value is None:
        return None
    bound = COUNT_LIMITS.get(option, 10**9)
    minimum = 0 if zero_means else 1
    if value < minimum or value > bound:
        want = f"0 ({zero_means}) or a positive integer" if zero_means else "a positive integer"
        raise UsageError(f"{option} {value}: expected {want}, at most {bound}")
    return value


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """Seconds from '90', '90s', '20m', '2h' or '1.5h': finite, positive, at most ten years."""
    units = {"s": 1, "m": 60, "h": 3600}
    raw = text.strip().lower()
    factor = units.get(raw[-1:], None)
    number = raw[:-1] if factor else raw
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise UsageError(
            f"{option} {_shown(text)}: expected a duration like 90s, 20m or 2h"
        ) from None
    if not math.isfinite(seconds):
        raise UsageError(f"{option} {_shown(text)}: expected a finite duration like 90s or 2h")
    if seconds <= 0:
        raise UsageError(f"{option} {_shown(text)}: expected a positive duration")
    if seconds > MAX_DURATION_S:
        raise UsageError(f"{option} {_shown(text)}: expected a duration of at most 87600h")
    return seconds


def check_parent_folder(option: str, value: str | Path) -> Path:
    """``value`` as a path to create (a file or folder) whose parent is an existing folder."""
    if not str(value).strip():
        raise UsageError(f"{option}: expected a path, got an empty string")
    path = Path(value)
    parent = path.parent
    if not parent.is_dir():
        if parent.exists():
            raise UsageError(f"{option} {path}: {parent} is a file; expected a folder")
        raise UsageError(f"{option} {path}: the folder {parent} does not exist")
    return path


def check_output_file(option: str, value: str | Path) -> Path:
    """``value`` as a file to write: in an existing folder, and not itself a folder."""
    path = check_parent_folder(option, value)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; expected a file name")
    return path


def check_model_file(option: str, value: str | Path) -> Path:
    """``value`` as a ``.keras`` file to write, in an existing folder."""
    path = check_output_file(option, value)
    if path.suffix != ".keras":
        raise UsageError(f"{option} {path}: expected a file name ending in .keras")
    return path
