from __future__ import annotations


class SearchError(Exception):
    """A search cannot start or go on; the message says what was expected and what was got."""


class UsageError(SearchError):
    """The command line or its combination with the stored study is wrong (exit code 2)."""


class DataError(SearchError):
    """Input data is missing, unreadable or malformed; the message names the file and problem."""


class TrialFailed(SearchError):
    """One trial failed (NaN loss, out of memory, a model that cannot be built); search goes on."""
