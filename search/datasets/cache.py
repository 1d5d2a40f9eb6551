"""An on-disk cache of prepared data: one ``.npz`` per key, written atomically, no pickles.

The key is a hash of the data's fingerprint and every preprocessing parameter, so a changed file
or option never hits a stale entry. Entries are shared by trials, processes, workers and resumes.
``RNNSEARCH_CACHE`` names the folder (``off`` turns the cache off); the default is
``$XDG_CACHE_HOME/rnnsearch/data`` (``~/.cache/rnnsearch/data``). Entries are created like any
other file, so the process umask decides who else may read them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from search import user_cache

log = logging.getLogger("rnnsearch")

META_KEY = "__meta__"


def cache_dir() -> Path | None:
    """The cache folder, or None when ``RNNSEARCH_CACHE`` is ``off`` (:mod:`search.user_cache`)."""
    return user_cache.folder("RNNSEARCH_CACHE", "data")


def entry_path(key: str) -> Path | None:
    root = cache_dir()
    return None if root is None else root / f"{key}.npz"


def load(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and metadata stored under ``key``; None when absent or unreadable."""
    path = entry_path(key)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files if name != META_KEY}
            meta = json.loads(str(f[META_KEY]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable data cache entry %s: %s", path, exc)
        return None
    return arrays, meta


def save(key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path | None:
    """Write an entry atomically (temporary file in the same folder, then ``os.replace``).

    A cache that cannot be written is not an error: the data was prepared in memory anyway.
    """
    path = entry_path(key)
    if path is None:
        return None
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = str(path.parent / f".{key}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        # Created like any file (0666 less the process umask), so the umask decides who else
        # may read the cache: 022 shares it, 077 keeps it private. O_EXCL: never an old file.
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        tmp_name = name
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays, **{META_KEY: np.array(json.dumps(meta))})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        return path
    except OSError as exc:
        log.warning("cannot write the data cache %s: %s", path, exc)
        return None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
