"""Reading user data (text tables and folders, numeric sequences) and the on-disk data cache.

:mod:`search.data` turns what these readers return into the arrays trials train on.
"""

from __future__ import annotations
