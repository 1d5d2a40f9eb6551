"""Load spaces from TOML files or the built-in catalogue."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from spaces.errors import SpaceError
from spaces.space import Space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_BUILTIN_PACKAGE = "spaces.builtin"


def builtin_names() -> list[str]:
    """Names of the spaces that ship with rnnsearch, sorted."""
    files = resources.files(_BUILTIN_PACKAGE).iterdir()
    return sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    if name not in builtin_names():
        raise SpaceError(
            f"{name}: no built-in space of that name and no such file; "
            f"built-in spaces are {', '.join(builtin_names())}"
        )
    return resources.files(_BUILTIN_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")


#: Deepest nesting of arrays and tables accepted in a space file: a real space nests two or three
#: levels; tomllib recurses once per level, so a file of 1,000 ``[`` would exhaust Python's stack.
MAX_NESTING = 100
#: Largest space file accepted (a space is a page of TOML).
MAX_BYTES = 1_000_000


def _nesting(text: str) -> int:
    """An upper bound of the bracket nesting of ``text`` (brackets inside strings count too)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def parse_space_text(text: str, source: str) -> Space:
    if len(text) > MAX_BYTES:
        raise SpaceError(
            f"{source}: expected a space file of at most {MAX_BYTES} characters, got {len(text)}"
        )
    if _nesting(text) > MAX_NESTING:
        raise SpaceError(
            f"{source}: expected arrays and tables nested at most {MAX_NESTING} deep, "
            f"got {_nesting(text)}"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = " ".join(str(exc).split())
        raise SpaceError(f"{source}: TOML syntax error: {detail}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise SpaceError(f"{source}: cannot parse the TOML: {type(exc).__name__}") from None
    try:
        return Space.from_dict(raw, source=source)
    except RecursionError:
        raise SpaceError(f"{source}: nested too deeply") from None


def load_space(name_or_path: str | Path) -> Space:
    """A built-in space by name, or a user's TOML file by path (a path wins when both exist)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in str(name_or_path):
        if path.is_dir():
            raise SpaceError(f"{path}: is a folder; expected a space file (.toml)")
        if not path.is_file():
            raise SpaceError(f"{path}: no such space file")
        try:
            if path.stat().st_size > MAX_BYTES:
                raise SpaceError(
                    f"{path}: expected a space file of at most {MAX_BYTES} bytes, "
                    f"got {path.stat().st_size}"
                )
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise SpaceError(f"{path}: cannot read the space file: {detail}") from None
        return parse_space_text(text, str(path))
    return parse_space_text(builtin_text(str(name_or_path)), f"{name_or_path} (built-in)")
