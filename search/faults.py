"""Named crash points for the crash tests: `RNNSEARCH_KILL_AT=point[@n]` SIGKILLs this process.

The resume tests need a kill -9 at exact moments (between writing a checkpoint and recording its
epoch, right after a trial finished, ...) that an outside timer cannot hit reliably. Unset, this
costs one dictionary lookup per point.
"""

from __future__ import annotations

import os
import signal

ENV = "RNNSEARCH_KILL_AT"
_seen: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
