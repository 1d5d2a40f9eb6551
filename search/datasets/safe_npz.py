"""Reading user ``.npz``/``.npy`` files without ever running code from them.

``np.load`` with pickles allowed unpickles object arrays, and a pickle can call any function
(``os.system`` included) while it loads. Here numeric arrays are read with pickles off, and object
arrays (the ragged lists of Keras' own ``imdb.npz``) go through :class:`NumbersUnpickler`, which
imports nothing: it resolves only numpy's array reconstruction, ``numpy.dtype`` and numeric
scalars, ``list``/``int``/``float`` and latin-1 bytes (protocol 2); any other global is refused
before it is looked up. What comes out must be an array of numbers, or an object array of
numbers, lists of numbers and numeric arrays. Every problem is a one-line
:class:`~search.errors.DataError` naming the file.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from search.errors import DataError

ONLY_NUMBERS = "only arrays of numbers and lists of numbers are read"
EXPECTED_NPZ = "expected an .npz archive of arrays as numpy.savez writes it"
EXPECTED_NPY = "expected an .npy array as numpy.save writes it"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"

# numpy's own reconstruction functions, whatever module this numpy version pickles them from.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.arange(2).__reduce_ex__(5)[0]


class _Refused(Exception):
    """A pickle asked for something outside the allow-list (turned into a DataError)."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _Refused(f"an array of type {getattr(subtype, '__name__', type(subtype).__name__)}")
    return _RECONSTRUCT(subtype, shape, dtype)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise _Refused(f"an array of dtype {dtype} from a buffer")
    return _FROMBUFFER(buf, dtype, shape, order)


def _scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise _Refused(f"a numpy scalar of dtype {dtype}")
    return _SCALAR(dtype, *args)


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles from Python 3 use it: bytes from latin-1 text."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with {type(text).__name__} and {encoding!r}")
    return text.encode("latin1")


#: (module, name) -> what it resolves to. Nothing else is ever imported from a pickle.
ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "list"): list,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED[(_module, "_reconstruct")] = _reconstruct
    ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED[(_module, "_frombuffer")] = _frombuffer  # pickle protocol 5


class NumbersUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, lists and numbers, and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        # Python 2 pickles (Keras' imdb.npz era) name builtins by their old modules.
        key = _compat_pickle.NAME_MAPPING.get(key, key)
        key = (_compat_pickle.IMPORT_MAPPING.get(key[0], key[0]), key[1])
        if key in ALLOWED:
            return ALLOWED[key]
        raise _Refused(f"global '{module}.{name}'")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id")


_NUMBER_TYPES = {int, float, bool}


class _Content(Exception):
    """An unpickled object that is not made of numbers."""


def _check_numbers(value: Any, where: str, depth: int = 0) -> None:
    """Raise ``_Content`` unless ``value`` is a number, a list of them or a numeric array."""
    if depth > 32:
        raise _Content(f"{where} nests too deep")
    if isinstance(value, np.ndarray):
        if type(value) is not np.ndarray:
            raise _Content(f"{where} is a {type(value).__name__}")
        if value.dtype == object:
            for i, v in enumerate(value.flat):
                _check_numbers(v, f"{where}[{i}]", depth + 1)
        elif value.dtype.kind not in "biuf":
            raise _Content(f"{where} is an array of dtype {value.dtype}")
        return
    if isinstance(value, list):
        kinds = set(map(type, value))
        if kinds <= _NUMBER_TYPES:
            return
        for i, v in enumerate(value):
            if type(v) not in _NUMBER_TYPES:
                _check_numbers(v, f"{where}[{i}]", depth + 1)
        return
    if type(value) in _NUMBER_TYPES or isinstance(value, (np.integer, np.floating, np.bool_)):
        return
    raise _Content(f"{where} is a {type(value).__name__}")


def _read_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fp)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(fp)
    if version == (3, 0):  # utf-8 field names; numpy has no public reader for this header
        return npy_format._read_array_header(fp, version)  # noqa: SLF001
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _read_npy(opener: Callable[[], IO[bytes]], path: Path, name: str) -> np.ndarray:
    """One .npy stream (opened twice for numeric arrays: header, then numpy's own reader)."""
    what = f"array {name!r}"
    try:
        with opener() as fp:
            shape, _fortran, dtype = _read_header(fp)
            if dtype.hasobject:
                array = NumbersUnpickler(fp, encoding="latin1").load()
            else:
                array = None
        if array is None:
            with opener() as fp:
                return npy_format.read_array(fp, allow_pickle=False)
    except _Refused as exc:
        raise DataError(
            f"{path}: {what} is a pickled object array; rnnsearch refuses to load {exc}: "
            f"{ONLY_NUMBERS} (ragged numbers: x_train_values plus x_train_lengths, see the README)"
        ) from None
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes may fail any way; one line each
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(
            f"{path}: cannot read {what}: {type(exc).__name__}"
            + (f": {reason[:200]}" if reason else "")
        ) from None
    if type(array) is not np.ndarray:
        raise DataError(
            f"{path}: {what} unpickles to a {type(array).__name__}, not an array; {ONLY_NUMBERS}"
        )
    if array.shape != tuple(shape):
        raise DataError(
            f"{path}: {what} holds an array of shape {array.shape}, its header says {shape}"
        )
    try:
        _check_numbers(array, name)
    except _Content as exc:
        raise DataError(f"{path}: {exc}; {ONLY_NUMBERS}") from None
    return array


def _sniff(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _not_what(path: Path, head: bytes, expected: str) -> DataError:
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"]", b"}"):
        looks = "it looks like a Python pickle, which is never loaded"
    elif head.startswith(NPY_MAGIC):
        looks = "it is a single .npy array"
    elif head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        looks = "it is a damaged or truncated zip file"
    else:
        looks = "unknown content"
    return DataError(f"{path}: not a numpy file ({looks}); {expected}")


class SafeNpz:
    """A read-only view of an ``.npz`` archive, like ``np.load``'s NpzFile without pickles.

    ``files`` lists the array names (``.npy`` suffix dropped); ``npz[name]`` reads one array
    safely. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        head = _sniff(self.path)
        if not head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
            raise _not_what(self.path, head, EXPECTED_NPZ)
        try:
            self._zip = zipfile.ZipFile(self.path)
            members = self._zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{self.path}: not a readable .npz archive (a damaged or truncated zip file: "
                f"{exc}); {EXPECTED_NPZ}"
            ) from None
        self._members = {m[:-4] if m.endswith(".npy") else m: m for m in members}
        self.files = list(self._members)

    def __enter__(self) -> SafeNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __getitem__(self, name: str) -> np.ndarray:
        member = self._members.get(name)
        if member is None:
            raise KeyError(name)
        return _read_npy(lambda: self._zip.open(member), self.path, name)


def open_npz(path: Path | str) -> SafeNpz:
    """Open a user ``.npz`` for safe reading (see :class:`SafeNpz`)."""
    return SafeNpz(Path(path))


def load_npz(path: Path | str, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or those in ``names``), read without running code."""
    with open_npz(path) as f:
        wanted = f.files if names is None else names
        missing = [n for n in wanted if n not in f]
        if missing:
            raise DataError(
                f"{f.path}: no array {missing[0]!r} (arrays: {', '.join(f.files) or 'none'})"
            )
        return {n: f[n] for n in wanted}


def load_npy(path: Path | str) -> np.ndarray:
    """One ``.npy`` array, read without running code."""
    path = Path(path)
    head = _sniff(path)
    if not head.startswith(NPY_MAGIC):
        raise _not_what(path, head, EXPECTED_NPY)
    return _read_npy(lambda: path.open("rb"), path, path.stem)
