from __future__ import annotations


class StorageError(Exception):
    """A study database cannot be opened, read or written; the message says what and why."""


class StorageURLError(StorageError):
    """The storage URL is malformed or names an unsupported database."""


class NotAStudyDatabaseError(StorageError):
    """The file or database exists but is not an rnnsearch/Optuna study database."""


class StudyNotFoundError(StorageError):
    """No study of the given name in the database."""


class DamagedStudyError(StorageError):
    """A study's stored record (its space, data options, a trial's configuration) is broken."""


class ReadOnlyDatabaseError(StorageError):
    """A command must write the study database, and its file or folder is not writable."""
