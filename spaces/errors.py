from __future__ import annotations


class SpaceError(Exception):
    """A search space is malformed; the message names the file, the dimension and what was expected."""
