"""rnnsearch's search engine: data, models, training, engines, the service and the CLI."""

from __future__ import annotations

from importlib import metadata


def _version() -> str:
    # The version is written once, in pyproject.toml; an installed (or editable) copy knows it.
    try:
        return metadata.version("rnnsearch")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _version()
