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


def parse_space_text(text: str, source: str) -> Space:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{source}: TOML syntax error: {exc}") from None
    return Space.from_dict(raw, source=source)


def load_space(name_or_path: str | Path) -> Space:
    """A built-in space by name, or a user's TOML file by path (a path wins when both exist)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in str(name_or_path):
        if not path.is_file():
            raise SpaceError(f"{path}: no such space file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpaceError(f"{path}: cannot read the space file: {exc}") from None
        return parse_space_text(text, str(path))
    return parse_space_text(builtin_text(str(name_or_path)), f"{name_or_path} (built-in)")
