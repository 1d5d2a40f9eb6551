from __future__ import annotations


class SpaceError(Exception):
    """A malformed search space; the message names the file, the dimension and what was expected."""
