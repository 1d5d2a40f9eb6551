"""Import TensorFlow without its C++ start-up chatter on the user's terminal.

TensorFlow 2.21 logs oneDNN and CUDA-probe lines through absl before any log level setting can
apply, so the import runs with file descriptor 2 pointed at a temporary file; the captured text
is written out again only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_done = False


def quiet_import(*, tensorflow_needed: bool = False) -> None:
    """Import TensorFlow quietly, before Keras does. Under the JAX backend TensorFlow is not
    imported at all (a GPU machine with JAX may have none), and Keras is kept from importing it,
    unless ``tensorflow_needed`` (TensorFlow's own text vectoriser, Keras Tuner)."""
    global _done
    if os.environ.get("KERAS_BACKEND") == "jax" and not tensorflow_needed:
        _keras_without_tensorflow()
        return
    if _done or "tensorflow" in sys.modules:
        if not _done:
            _quiet_python_loggers()
        _done = True
        _keras_with_tensorflow()
        return
    _done = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("RNNSEARCH_TF_VERBOSE"):
        import tensorflow  # noqa: F401

        _keras_with_tensorflow()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, once
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    _quiet_python_loggers()
    _keras_with_tensorflow()


def _keras_without_tensorflow() -> None:
    """Under JAX, Keras as on a machine without TensorFlow, until something needs TensorFlow.

    Keras imports TensorFlow whenever it is installed, whatever the backend: to seed it
    (``keras.utils.set_random_seed``) and to check for its types when saving a model. That
    import costs 4-5 s of every trial process's start on 2 cores and prints TensorFlow's C++
    start-up lines, yet nothing of a JAX trial uses TensorFlow. Keras asks one lazy module
    whether TensorFlow is available; it is told no, as on a JAX-only install (the GPU machine),
    and told again to look once TensorFlow is imported (:func:`_keras_with_tensorflow`).
    """
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        # Keras loaded by someone else first (a notebook, the user's code): theirs to configure.
        return
    lazy = _keras_lazy_tensorflow()
    if lazy is not None and getattr(lazy, "module", None) is None:
        lazy._available = False


def _keras_with_tensorflow() -> None:
    """TensorFlow is loaded: Keras may use it again (undoes :func:`_keras_without_tensorflow`)."""
    if "keras" not in sys.modules:
        return
    lazy = _keras_lazy_tensorflow()
    if lazy is not None and lazy._available is False:
        lazy._available = None


def _keras_lazy_tensorflow() -> object | None:
    """Keras' lazy handle on TensorFlow (``keras.src.utils.module_utils.tensorflow``), or None
    where this Keras has none of that form."""
    try:
        from keras.src.utils import module_utils
    except ImportError:
        return None
    lazy = getattr(module_utils, "tensorflow", None)
    return lazy if hasattr(lazy, "_available") else None


def _quiet_python_loggers() -> None:
    """TensorFlow's Python-side warnings (``5 out of the last 5 calls ... triggered tf.function
    retracing``: trials of different shapes retrace by design) stay out of progress and logs."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Take every object alive now out of the garbage collector's view while the block runs.

    After TensorFlow, Keras and Optuna are imported the collector tracks about 300,000 objects
    that live as long as the process; the full collection that frees each trial's model
    (``clear_session(free_memory=True)``) scanned them all, 0.15 s per trial on 2 cores. Frozen
    (``gc.freeze``), it scans only what trials create. They are handed back on the way out, so a
    caller that keeps working in the process (a notebook, the tests) collects as before.
    """
    import gc

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
