"""Which Keras backend trains a study's models, chosen before Keras is imported.

Keras reads its backend once, when it is first imported (``KERAS_BACKEND``). A run picks it from
``--backend``, else :func:`default_backend`, and sets it before anything imports Keras; worker
processes inherit it through the environment. A process that already imported Keras (a
notebook, the tests) keeps its backend: asking for another one there is a usage error, since
Keras cannot switch in place.

Both backends train the same models from the same checkpoints (weights files are backend
neutral), so a study may be resumed under the other backend. JAX compiles every training step
(``jax.jit``), TensorFlow does with ``jit_compile=True`` (XLA); bench/compiled_steps.py
compares them side by side.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from search.errors import UsageError

BACKENDS = ("jax", "tensorflow")
#: The default: JAX trained every reference configuration fastest per example once compiled
#: (bench/compiled_steps.py), and in the default search on full IMDB its trials took less wall
#: time than under TensorFlow's graphs despite 11-25 s of compiling each (GRU-32: 48 s against
#: 90 s; docs/benchmarks.md). TensorFlow is the fallback where JAX is not installed.
PREFERRED_BACKEND = "jax"


def available(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def default_backend(stored: str | None = None) -> str:
    """The backend of a run that names none: the one Keras already runs in this process, else
    ``KERAS_BACKEND`` when set, else the study's (``stored``), else the preferred one when it is
    installed, else TensorFlow."""
    loaded = loaded_backend()
    if loaded is not None:
        return loaded
    env = os.environ.get("KERAS_BACKEND")
    if env in BACKENDS:
        return env
    if stored in BACKENDS and available(stored):
        return stored
    return PREFERRED_BACKEND if available(PREFERRED_BACKEND) else "tensorflow"


def loaded_backend() -> str | None:
    """The backend of the Keras this process imported already (None: Keras not imported)."""
    if "keras" not in sys.modules:
        return None
    import keras

    return str(keras.backend.backend())


def check_backend(backend: str | None, option: str = "--backend") -> None:
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"{option} {backend}: expected one of {', '.join(BACKENDS)}")


def activate(backend: str, option: str = "--backend") -> None:
    """Make ``backend`` the Keras backend of this process (and of the processes it starts)."""
    check_backend(backend, option)
    loaded = loaded_backend()
    if loaded is not None:
        if loaded != backend:
            raise UsageError(
                f"{option} {backend}: Keras is already loaded with the {loaded} backend in this "
                f"process and cannot switch; start a new process (or set KERAS_BACKEND={backend} "
                "before importing Keras)"
            )
        return
    if not available(backend):
        raise UsageError(
            f"{option} {backend}: the {backend} package is not installed "
            f"(pip install {'jax' if backend == 'jax' else 'tensorflow'})"
        )
    os.environ["KERAS_BACKEND"] = backend
