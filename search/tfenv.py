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


def quiet_import() -> None:
    global _done
    if _done or "tensorflow" in sys.modules:
        if not _done:
            _quiet_python_loggers()
        _done = True
        return
    _done = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("RNNSEARCH_TF_VERBOSE"):
        import tensorflow  # noqa: F401

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
