"""Reading user data and the on-disk data cache.

Readers: Keras' imdb.npz layout (:mod:`.imdb`), text tables and folders and numeric sequences
(:mod:`.readers`); every user .npz/.npy goes through :mod:`.safe_npz`, which never unpickles
anything but arrays and lists of numbers.

:mod:`search.data` turns what these readers return into the arrays trials train on.
"""

from __future__ import annotations
