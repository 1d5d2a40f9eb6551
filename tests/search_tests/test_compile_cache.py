"""The compilation cache on disk (search/compile_cache.py): where it lives and writes that a crash
cannot tear. A study resumed after SIGKILL loading its compiled steps, and Hyperband's later
rounds loading theirs, are checked end to end by bench/compile_cache.py's quick mode
(tests/test_bench_quick.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from search import compile_cache
from search.errors import UsageError

EXE = str(Path(sys.executable).with_name("rnnsearch"))

FIXED_SPACE = """
name = "fixed"
[dimensions]
cell = "gru"
units = 8
maxlen = 60
embedding_dim = 8
vocab_size = 1000
batch_size = 32
"""


def test_the_folder_is_chosen_off_or_the_users_cache(tmp_path):
    assert compile_cache.root({"RNNSEARCH_COMPILE_CACHE": "off"}) is None
    assert compile_cache.root({"RNNSEARCH_COMPILE_CACHE": "OFF"}) is None
    chosen = compile_cache.root({"RNNSEARCH_COMPILE_CACHE": str(tmp_path / "c")})
    assert chosen == tmp_path / "c"
    default = compile_cache.root({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert default == tmp_path / "xdg" / "rnnsearch" / "xla"
    # one folder per JAX and per processor: the key JAX gives an entry does not name the CPU
    inside = compile_cache.folder(tmp_path)
    assert inside.parent == tmp_path
    assert inside.name.startswith("jax-") and compile_cache.cpu_tag() in inside.name
    assert compile_cache.folder(tmp_path) == inside
    assert not any(tmp_path.iterdir()), "choosing a folder creates nothing"


def test_a_folder_that_cannot_hold_the_cache_is_refused_and_nothing_made(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for value in (str(a_file), str(a_file / "below")):
        with pytest.raises(UsageError, match="is not a folder") as caught:
            compile_cache.check_setting({"RNNSEARCH_COMPILE_CACHE": value})
        assert "RNNSEARCH_COMPILE_CACHE=" in str(caught.value)
    compile_cache.check_setting({"RNNSEARCH_COMPILE_CACHE": str(tmp_path / "new" / "deep")})
    compile_cache.check_setting({"RNNSEARCH_COMPILE_CACHE": "off"})
    compile_cache.check_setting({})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def _lru(path: Path, max_size: int):
    pytest.importorskip("filelock")
    from jax._src.lru_cache import LRUCache

    compile_cache._patch_atomic_put()
    return LRUCache(str(path), max_size=max_size)


def test_an_entry_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    cache = _lru(tmp_path, max_size=10_000)
    cache.put("a", b"x" * 100)
    assert cache.get("a") == b"x" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lockfile", "a-atime", "a-cache"]

    # A process that dies while writing (here: the rename never happens) leaves no entry under
    # the entry's name, so no later process reads half an executable.
    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compile_cache.os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        cache.put("b", b"y" * 100)
    monkeypatch.undo()
    assert cache.get("b") is None
    assert not list(tmp_path.glob("b-cache*")) and not list(tmp_path.glob(".*tmp"))
    cache.put("b", b"y" * 100)
    assert cache.get("b") == b"y" * 100


def test_an_entry_without_its_access_time_does_not_stop_eviction(tmp_path):
    cache = _lru(tmp_path, max_size=250)
    cache.put("old", b"o" * 100)
    # what JAX's own write leaves when killed between the entry and its access time
    (tmp_path / "orphan-cache").write_bytes(b"z" * 100)
    cache.put("new", b"n" * 100)  # JAX's eviction alone raises FileNotFoundError here
    assert cache.get("new") == b"n" * 100
    assert cache.get("orphan") is None, "the entry without an access time went first"
    assert cache.get("old") == b"o" * 100
