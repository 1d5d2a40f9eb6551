"""Compiled training steps kept on disk under Keras' JAX backend, so a step compiled once is loaded
the next time instead of compiled again.

Under JAX every batch width of a trial compiles a training and a validation step: 6-23 s of a
trial on full IMDB on 2 cores (docs/speed.md). The same steps come back whenever the same
configuration trains again in a new process or a new trial: Hyperband's later rounds (the
configuration of a round-0 trial, warm-started), a study resumed after a crash or Ctrl-C, the
workers of one machine, a rerun. JAX's persistent compilation cache serves them; rnnsearch turns
it on where the user has not configured it, and makes its writes safe for the way rnnsearch runs:

- Where: ``RNNSEARCH_COMPILE_CACHE`` names the folder (``off`` turns the cache off); by default
  ``$XDG_CACHE_HOME/rnnsearch/xla`` (``~/.cache/rnnsearch/xla``), as :mod:`search.user_cache`
  rules for every cache. Inside it, one folder per JAX version and CPU (its instruction set
  extensions): JAX's key names the platform (``cpu``) but not the processor, and a folder
  shared between machines (a home on NFS, workers on many hosts) must never hand one CPU code
  compiled for another.
- Size: at most :data:`MAX_BYTES`, the least recently used entries evicted (JAX's own LRU
  cache; ``filelock`` guards it across processes).
- Writes: JAX writes an entry in place, so a process killed with SIGKILL in the middle (a case
  rnnsearch promises to survive) would leave a torn entry that every later process reads, warns
  about and compiles again, and an entry without its access-time file stops JAX's eviction for
  good. :func:`enable` makes each write whole or absent: the access time first, then the entry,
  each into a temporary file renamed into place.
- A user who set ``JAX_COMPILATION_CACHE_DIR`` (or ``jax_compilation_cache_dir``) keeps theirs,
  unless ``RNNSEARCH_COMPILE_CACHE`` is set as well.

What a trial loaded instead of compiling is in its record (``compilations_cached``,
:class:`search.train.CompileMeter`). TensorFlow's XLA keeps no such cache: this is JAX only.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from search import user_cache
from search.errors import UsageError

CACHE_ENV = "RNNSEARCH_COMPILE_CACHE"
#: The cache's size on disk at most; the least recently used entries go first. An entry is the
#: compiled step of one batch width of one model: 0.1-1 MB for the default space's models.
MAX_BYTES = 2 * 2**30

_lock = threading.Lock()
_enabled: Path | None = None
_put_patched = False


def setting(environ: Mapping[str, str] | None = None) -> str | None:
    """``RNNSEARCH_COMPILE_CACHE`` as set (None: not set)."""
    value = (os.environ if environ is None else environ).get(CACHE_ENV)
    return None if value is None else value.strip()


def root(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder the user chose, else the default one; None when the cache is turned off."""
    return user_cache.folder(CACHE_ENV, "xla", environ)


def check_setting(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a ``RNNSEARCH_COMPILE_CACHE`` that can never hold the cache (a file, a folder that
    cannot be written), before a run creates anything; creates nothing itself."""
    chosen = setting(environ)
    if chosen is None or user_cache.is_off(CACHE_ENV, environ):
        return
    path = Path(chosen).expanduser()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UsageError(
            f"{CACHE_ENV}={chosen}: {existing} is not a folder; expected a folder for the "
            f"compilation cache, or {CACHE_ENV}=off"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{CACHE_ENV}={chosen}: {existing} cannot be written; expected a folder this user "
            f"can write, or {CACHE_ENV}=off"
        )


def cpu_tag() -> str:
    """A short name for this processor's instruction set: its architecture and, on Linux, the
    feature flags of ``/proc/cpuinfo`` (two machines share compiled code only if they agree)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        flags = platform.processor()
    digest = hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]
    return f"{platform.machine() or 'cpu'}-{digest}"


def folder(base: Path) -> Path:
    """The cache folder for this JAX and this CPU inside ``base``."""
    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return base / f"jax-{version}-{cpu_tag()}"


def enable(environ: Mapping[str, str] | None = None) -> Path | None:
    """Turn JAX's compilation cache on for this process (idempotent; call it before a trial's
    first compilation); returns the folder in use, or None where there is none: another
    backend, the cache turned off, the user's own JAX cache setting, a folder that cannot be
    made (the default one only: a chosen one is checked by :func:`check_setting` first)."""
    global _enabled
    environ = os.environ if environ is None else environ
    import keras

    if keras.backend.backend() != "jax":
        return None
    with _lock:
        import jax

        current = jax.config.jax_compilation_cache_dir
        if _enabled is not None and current == str(_enabled):
            return _enabled
        base = root(environ)
        if base is None:
            return None
        if current and setting(environ) is None:
            return None  # the user's own JAX setting
        try:
            import filelock  # noqa: F401 - JAX's LRU eviction needs it
        except ImportError:
            return None
        path = folder(base)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        _patch_atomic_put()
        jax.config.update("jax_compilation_cache_dir", str(path))
        # Every step, however quick to compile: a trial's many small ones add up.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
        from jax._src import compilation_cache

        # JAX decides once per process whether it caches, at its first compilation: decide
        # again with these settings.
        compilation_cache.reset_cache()
        _enabled = path
        return path


def _patch_atomic_put() -> None:
    """JAX's ``LRUCache.put`` with each file written whole (temporary file, then rename) and
    the access time before the entry, so no crash leaves a torn entry or one without its
    access time. Left as it is where this JAX's cache has another form."""
    global _put_patched
    if _put_patched:
        return
    try:
        from jax._src import lru_cache
    except ImportError:
        return
    cache_class = getattr(lru_cache, "LRUCache", None)
    cache_suffix = getattr(lru_cache, "_CACHE_SUFFIX", None)
    atime_suffix = getattr(lru_cache, "_ATIME_SUFFIX", None)
    if cache_class is None or not (isinstance(cache_suffix, str) and isinstance(atime_suffix, str)):
        return
    original = cache_class.put

    def put(self: Any, key: str, value: bytes) -> None:
        if not key or not isinstance(getattr(self, "path", None), Path):
            return original(self, key, value)
        eviction = bool(getattr(self, "eviction_enabled", False))
        if eviction and len(value) > self.max_size:
            return None
        entry = self.path / f"{key}{cache_suffix}"
        if eviction:
            self.lock.acquire(timeout=self.lock_timeout_secs)
        try:
            if entry.exists():
                return None
            if eviction:
                try:
                    self._evict_if_needed(additional_size=len(value))
                except FileNotFoundError:
                    # an entry without its access time (written by another tool, or another
                    # process evicting at once): count it as the oldest, then evict again
                    _mend_access_times(self.path, cache_suffix, atime_suffix)
                    self._evict_if_needed(additional_size=len(value))
                now = time.time_ns().to_bytes(8, "little")
                _write_whole(self.path / f"{key}{atime_suffix}", now)
            _write_whole(entry, value)
        finally:
            if eviction:
                self.lock.release()
        return None

    put.__doc__ = original.__doc__
    cache_class.put = put
    _put_patched = True


def _mend_access_times(path: Path, cache_suffix: str, atime_suffix: str) -> None:
    for entry in path.glob(f"*{cache_suffix}"):
        atime = path / f"{entry.name.removesuffix(cache_suffix)}{atime_suffix}"
        if not atime.exists():
            _write_whole(atime, (0).to_bytes(8, "little"))


def _write_whole(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
