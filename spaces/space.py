"""Search spaces over RNN architectures and training settings.

A :class:`Space` is an ordered tuple of dimensions. Each dimension is fixed, a range or a choice,
and may apply only when another dimension takes given values. Spaces are pure data: no engine,
TensorFlow or Optuna import lives here. Engines translate a space into their own vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spaces.errors import SpaceError

Value = int | float | str | bool

#: What a space may ask to be fitted to before a study runs it (``fit = "data"``: spaces.fit).
FIT_KINDS = ("data",)


@dataclass(frozen=True)
class DimensionSpec:
    """What a known dimension accepts: its value type, allowed values or bounds, and default."""

    type: type
    default: Value | None
    choices: tuple[Value, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: bool = False
    doc: str = ""

    @property
    def type_name(self) -> str:
        return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}[self.type]


#: Every dimension a space may name, in the order models and training read them. The maxima
#: keep a typing slip (a size of 1e11) from reaching Keras, where it fails deep in a trial or
#: asks for terabytes; they lie far beyond what an RNN search trains.
KNOWN_DIMENSIONS: dict[str, DimensionSpec] = {
    "cell": DimensionSpec(
        str, "simple", choices=("simple", "jordan", "lstm", "gru"), doc="recurrent cell"
    ),
    "units": DimensionSpec(int, 32, minimum=1, maximum=4096, doc="units per recurrent layer"),
    "layers": DimensionSpec(int, 1, minimum=1, maximum=3, doc="stacked recurrent layers"),
    "bidirectional": DimensionSpec(bool, False, doc="wrap each recurrent layer in Bidirectional"),
    "merge_mode": DimensionSpec(
        str, "concat", choices=("concat", "sum", "mul", "ave"), doc="how directions combine"
    ),
    "activation": DimensionSpec(
        str, "tanh", choices=("tanh", "relu"), doc="activation of simple and jordan cells"
    ),
    "dropout": DimensionSpec(
        float, 0.0, minimum=0.0, maximum=1.0, exclusive_maximum=True, doc="input dropout"
    ),
    "recurrent_dropout": DimensionSpec(
        float, 0.0, minimum=0.0, maximum=1.0, exclusive_maximum=True, doc="recurrent dropout"
    ),
    "head": DimensionSpec(
        str, "last", choices=("last", "max", "average"), doc="last state or pooling over time"
    ),
    "embedding_dim": DimensionSpec(
        int, 32, minimum=1, maximum=4096, doc="embedding size (token input)"
    ),
    "vocab_size": DimensionSpec(
        int, 10_000, minimum=3, maximum=2_000_000, doc="vocabulary size (token input)"
    ),
    "maxlen": DimensionSpec(
        int, 200, minimum=1, maximum=100_000, doc="sequence length after padding"
    ),
    "padding": DimensionSpec(str, "pre", choices=("pre", "post"), doc="where padding goes"),
    "optimizer": DimensionSpec(
        str, "adam", choices=("adam", "rmsprop", "adamax", "sgd"), doc="optimiser"
    ),
    "learning_rate": DimensionSpec(float, 1e-3, minimum=0.0, maximum=10.0, doc="learning rate"),
    "batch_size": DimensionSpec(int, 64, minimum=1, maximum=65_536, doc="batch size"),
    "epochs": DimensionSpec(
        int, None, minimum=1, maximum=10_000, doc="epochs (default: --max-epochs)"
    ),
}

#: Dimensions of token input only: numeric data has no vocabulary and no embedding.
TOKEN_ONLY = ("vocab_size", "embedding_dim")


def _describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool)) or value is None else repr(value)


def _check_value(name: str, value: Any, where: str) -> Value:
    """Return ``value`` converted to the dimension's type, or raise a SpaceError."""
    spec = KNOWN_DIMENSIONS[name]
    if spec.type is bool:
        ok = isinstance(value, bool)
    elif spec.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise SpaceError(f"{where}: expected {spec.type_name}, got {_describe(value)}")
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        raise SpaceError(f"{where}: expected one of {allowed}, got {_describe(value)}")
    if spec.minimum is not None and value < spec.minimum:
        raise SpaceError(f"{where}: expected a value >= {spec.minimum:g}, got {value!r}")
    if spec.maximum is not None:
        if spec.exclusive_maximum and value >= spec.maximum:
            raise SpaceError(f"{where}: expected a value < {spec.maximum:g}, got {value!r}")
        if not spec.exclusive_maximum and value > spec.maximum:
            raise SpaceError(f"{where}: expected a value <= {spec.maximum:g}, got {value!r}")
    return value


@dataclass(frozen=True)
class Condition:
    """The dimension applies only while ``parent`` takes one of ``values``."""

    parent: str
    values: tuple[Value, ...]

    def holds(self, params: Mapping[str, Any]) -> bool:
        return params.get(self.parent) in self.values

    def to_dict(self) -> dict[str, Any]:
        return {self.parent: list(self.values)}


@dataclass(frozen=True)
class Fixed:
    name: str
    value: Value
    when: Condition | None = None


@dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` inclusive, every ``step``-th, optionally log-spaced."""

    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False
    when: Condition | None = None


@dataclass(frozen=True)
class FloatRange:
    """Reals from ``low`` to ``high`` inclusive; ``step`` discretises, ``log`` is log-uniform."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False
    when: Condition | None = None


@dataclass(frozen=True)
class Choice:
    name: str
    values: tuple[Value, ...]
    when: Condition | None = None


Dimension = Fixed | IntRange | FloatRange | Choice


def dimension_to_dict(dim: Dimension) -> dict[str, Any] | Value:
    """The TOML/JSON form of a dimension: a bare value when fixed and unconditional."""
    if isinstance(dim, Fixed):
        body: dict[str, Any] = {"value": dim.value}
    elif isinstance(dim, Choice):
        body = {"choice": list(dim.values)}
    else:
        body = {"low": dim.low, "high": dim.high}
        if dim.step is not None and not (isinstance(dim, IntRange) and dim.step == 1):
            body["step"] = dim.step
        if dim.log:
            body["log"] = True
    if dim.when is not None:
        body["when"] = dim.when.to_dict()
    elif isinstance(dim, Fixed):
        return dim.value
    return body


_RANGE_KEYS = {"low", "high", "step", "log", "when"}
_CHOICE_KEYS = {"choice", "when"}
_FIXED_KEYS = {"value", "when"}


def _parse_condition(name: str, raw: Any, where: str) -> Condition:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise SpaceError(
            f"{where}.when: expected one condition like {{ bidirectional = true }}, got {raw!r}"
        )
    ((parent, values),) = raw.items()
    if parent not in KNOWN_DIMENSIONS:
        raise SpaceError(f"{where}.when: condition on unknown dimension {parent!r}")
    if parent == name:
        raise SpaceError(f"{where}.when: a dimension cannot depend on itself")
    seq = list(values) if isinstance(values, list) else [values]
    if not seq:
        raise SpaceError(f"{where}.when.{parent}: expected at least one value, got []")
    checked = tuple(_check_value(parent, v, f"{where}.when.{parent}") for v in seq)
    return Condition(parent, checked)


def parse_dimension(name: str, raw: Any, where: str = "") -> Dimension:
    """Build one dimension from its TOML/JSON form, validating it against KNOWN_DIMENSIONS."""
    where = f"{where}{name}" if where else name
    if name not in KNOWN_DIMENSIONS:
        known = ", ".join(KNOWN_DIMENSIONS)
        raise SpaceError(f"{where}: unknown dimension; expected one of {known}")
    spec = KNOWN_DIMENSIONS[name]
    if not isinstance(raw, Mapping):
        return Fixed(name, _check_value(name, raw, where))
    keys = set(raw)
    when = _parse_condition(name, raw["when"], where) if "when" in raw else None
    if "choice" in keys:
        if keys - _CHOICE_KEYS:
            raise SpaceError(
                f"{where}: unexpected keys {sorted(keys - _CHOICE_KEYS)} beside choice"
            )
        values = raw["choice"]
        if not isinstance(values, list):
            raise SpaceError(f"{where}.choice: expected a list of values, got {_describe(values)}")
        if not values:
            raise SpaceError(f"{where}.choice: expected at least one value, got []")
        checked = tuple(_check_value(name, v, f"{where}.choice") for v in values)
        if len(set(checked)) != len(checked):
            raise SpaceError(f"{where}.choice: values must be distinct, got {values!r}")
        return Choice(name, checked, when)
    if "value" in keys:
        if keys - _FIXED_KEYS:
            raise SpaceError(f"{where}: unexpected keys {sorted(keys - _FIXED_KEYS)} beside value")
        return Fixed(name, _check_value(name, raw["value"], where), when)
    if "low" in keys or "high" in keys:
        if keys - _RANGE_KEYS:
            raise SpaceError(f"{where}: unexpected keys {sorted(keys - _RANGE_KEYS)} in a range")
        if "low" not in keys or "high" not in keys:
            raise SpaceError(f"{where}: a range needs both low and high")
        if spec.type not in (int, float):
            raise SpaceError(f"{where}: a range needs a numeric dimension; use choice for {name}")
        low = _check_value(name, raw["low"], f"{where}.low")
        high = _check_value(name, raw["high"], f"{where}.high")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{where}.log: expected a boolean, got {_describe(log)}")
        if low > high:
            raise SpaceError(f"{where}: expected low <= high, got low={low!r} > high={high!r}")
        if log and low <= 0:
            raise SpaceError(f"{where}: a log range needs low > 0, got low={low!r}")
        step = raw.get("step")
        if spec.type is int:
            if step is None:
                step = 1
            if not isinstance(step, int) or isinstance(step, bool) or step < 1:
                raise SpaceError(
                    f"{where}.step: expected a positive integer, got {_describe(step)}"
                )
            if log and step != 1:
                raise SpaceError(
                    f"{where}: log and step > 1 cannot be combined (Optuna forbids it)"
                )
            return IntRange(name, int(low), int(high), int(step), log, when)
        if step is not None:
            if not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0:
                raise SpaceError(f"{where}.step: expected a positive number, got {_describe(step)}")
            if log:
                raise SpaceError(f"{where}: log and step cannot be combined (Optuna forbids it)")
            step = float(step)
        return FloatRange(name, float(low), float(high), step, log, when)
    raise SpaceError(
        f"{where}: expected a value, {{ choice = [...] }} or {{ low = ..., high = ... }}, "
        f"got keys {sorted(keys)}"
    )


def possible_values(dim: Dimension) -> tuple[Value, ...] | None:
    """The finite set of values a dimension can take, or None for a range."""
    if isinstance(dim, Fixed):
        return (dim.value,)
    if isinstance(dim, Choice):
        return dim.values
    return None


@dataclass(frozen=True)
class Space:
    """An ordered, validated set of dimensions.

    Dimensions a space leaves out take the defaults of :data:`KNOWN_DIMENSIONS`, so every trial's
    configuration (see :meth:`resolve`) names every dimension.
    """

    name: str
    dimensions: tuple[Dimension, ...]
    description: str = ""
    #: Configurations to try first (Optuna engine): known-good points that seed the sampler.
    start: tuple[Mapping[str, Value], ...] = ()
    #: "data": a template whose data-dependent dimensions are fitted per study (spaces.fit).
    fit: str | None = None
    _by_name: dict[str, Dimension] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Dimension] = {}
        for dim in self.dimensions:
            if dim.name in by_name:
                raise SpaceError(f"{self.name}: dimension {dim.name!r} appears twice")
            if dim.when is not None:
                parent = by_name.get(dim.when.parent)
                if parent is None:
                    raise SpaceError(
                        f"{self.name}: {dim.name}.when names {dim.when.parent!r}, which is not a "
                        f"dimension of this space defined before {dim.name}"
                    )
                reachable = possible_values(parent)
                if reachable is not None and not set(dim.when.values) & set(reachable):
                    raise SpaceError(
                        f"{self.name}: {dim.name}.when needs {dim.when.parent} in "
                        f"{list(dim.when.values)}, but {dim.when.parent} only takes "
                        f"{list(reachable)}"
                    )
            by_name[dim.name] = dim
        object.__setattr__(self, "_by_name", by_name)

    def __getitem__(self, name: str) -> Dimension:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def searched(self) -> tuple[Dimension, ...]:
        """Dimensions an engine has to sample (everything that is not fixed)."""
        return tuple(d for d in self.dimensions if not isinstance(d, Fixed))

    def is_active(self, dim: Dimension, params: Mapping[str, Any]) -> bool:
        return dim.when is None or dim.when.holds(params)

    def resolve(
        self,
        sampled: Mapping[str, Any],
        *,
        max_epochs: int | None = None,
        token_input: bool = True,
    ) -> dict[str, Any]:
        """A complete trial configuration: sampled values, fixed values, then defaults.

        ``token_input=False`` (numeric data): the token-only dimensions get no default, so a
        trial's configuration never shows a vocabulary or embedding its model does not have.
        """
        config: dict[str, Any] = {}
        for dim in self.dimensions:
            if not self.is_active(dim, config):
                continue
            if isinstance(dim, Fixed):
                config[dim.name] = dim.value
            elif dim.name in sampled:
                config[dim.name] = sampled[dim.name]
            else:
                raise SpaceError(f"{self.name}: no value sampled for active dimension {dim.name}")
        for name, spec in KNOWN_DIMENSIONS.items():
            if name not in config and (token_input or name not in TOKEN_ONLY):
                config[name] = spec.default
        if config["epochs"] is None:
            config["epochs"] = max_epochs
        elif max_epochs is not None:
            config["epochs"] = min(config["epochs"], max_epochs)
        return config

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "dimensions": {d.name: dimension_to_dict(d) for d in self.dimensions},
        }
        if self.fit is not None:
            out["fit"] = self.fit
        if self.start:
            out["start"] = [dict(p) for p in self.start]
        return out

    def start_points(self) -> list[dict[str, Value]]:
        """The ``start`` configurations as sampled values: active searched dimensions only."""
        points = []
        for point in self.start:
            resolved: dict[str, Any] = {}
            sampled: dict[str, Value] = {}
            for dim in self.dimensions:
                if not self.is_active(dim, resolved):
                    continue
                if isinstance(dim, Fixed):
                    resolved[dim.name] = dim.value
                    continue
                resolved[dim.name] = sampled[dim.name] = point[dim.name]
            points.append(sampled)
        return points

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @property
    def fingerprint(self) -> str:
        """A hash of the dimensions (not the name or description): equal spaces, equal hash."""
        body = json.dumps(self.to_dict()["dimensions"], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "space") -> Space:
        """Validate a TOML/JSON document; every error names ``source`` and the dimension."""
        if not isinstance(raw, Mapping):
            raise SpaceError(f"{source}: expected a table, got {type(raw).__name__}")
        unknown = set(raw) - {"name", "description", "fit", "dimensions", "start"}
        if unknown:
            raise SpaceError(
                f"{source}: unknown top-level keys {sorted(unknown)}; "
                "expected name, description, fit, [dimensions], [[start]]"
            )
        fit = raw.get("fit")
        if fit is not None and fit not in FIT_KINDS:
            raise SpaceError(
                f"{source}: fit: expected one of {', '.join(map(json.dumps, FIT_KINDS))}, "
                f"got {_describe(fit)}"
            )
        name = raw.get("name", source)
        if not isinstance(name, str) or not name:
            raise SpaceError(f"{source}: name: expected a non-empty string, got {name!r}")
        description = raw.get("description", "")
        dims_raw = raw.get("dimensions")
        if not isinstance(dims_raw, Mapping) or not dims_raw:
            raise SpaceError(f"{source}: expected a [dimensions] table with at least one dimension")
        dims: list[Dimension] = []
        for dim_name, dim_raw in dims_raw.items():
            try:
                dims.append(parse_dimension(dim_name, dim_raw))
            except SpaceError as exc:
                raise SpaceError(f"{source}: {exc}") from None
        try:
            space = cls(name=name, dimensions=tuple(dims), description=str(description), fit=fit)
        except SpaceError as exc:
            raise SpaceError(f"{source}: {str(exc).split(': ', 1)[1]}") from None
        start_raw = raw.get("start", [])
        if not isinstance(start_raw, list):
            raise SpaceError(f"{source}: start: expected [[start]] tables, got {start_raw!r}")
        start = tuple(
            _parse_start_point(space, point, f"{source}: start[{i}]")
            for i, point in enumerate(start_raw)
        )
        return replace(space, start=start) if start else space

    @classmethod
    def from_json(cls, text: str, *, source: str = "stored space") -> Space:
        try:
            raw = json.loads(text)
        except (TypeError, ValueError, RecursionError) as exc:
            raise SpaceError(f"{source}: the stored space is not valid JSON ({exc})") from None
        return cls.from_dict(raw, source=source)


def _contains(dim: Dimension, value: Value) -> bool:
    if isinstance(dim, Fixed):
        return value == dim.value
    if isinstance(dim, Choice):
        return value in dim.values
    if not dim.low <= value <= dim.high:
        return False
    if dim.step is None or (isinstance(dim, IntRange) and dim.step == 1):
        return True
    steps = (value - dim.low) / dim.step
    return abs(steps - round(steps)) < 1e-9


def _parse_start_point(space: Space, point: Any, where: str) -> dict[str, Value]:
    """A start configuration: a value for every active searched dimension, inside its range."""
    if not isinstance(point, Mapping):
        raise SpaceError(f"{where}: expected a table of dimension values, got {point!r}")
    unknown = sorted(set(point) - set(space.names))
    if unknown:
        raise SpaceError(f"{where}: {unknown[0]} is not a dimension of this space")
    checked: dict[str, Value] = {}
    resolved: dict[str, Any] = {}
    for dim in space.dimensions:
        if not space.is_active(dim, resolved):
            continue
        if dim.name not in point:
            if isinstance(dim, Fixed):
                resolved[dim.name] = dim.value
                continue
            raise SpaceError(f"{where}: expected a value for {dim.name}")
        value = _check_value(dim.name, point[dim.name], f"{where}.{dim.name}")
        if not _contains(dim, value):
            raise SpaceError(
                f"{where}.{dim.name}: {_describe(value)} lies outside the dimension "
                f"{json.dumps(dimension_to_dict(dim))}"
            )
        resolved[dim.name] = checked[dim.name] = value
    return checked


def space_from_pairs(name: str, pairs: Sequence[tuple[str, Any]], description: str = "") -> Space:
    """Build a space in Python from (dimension, TOML-form) pairs; used by the built-in spaces."""
    return Space.from_dict(
        {"name": name, "description": description, "dimensions": dict(pairs)}, source=name
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else f"{text}.0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise SpaceError(f"cannot write {value!r} as TOML")


def space_toml(space: Space, comments: Sequence[str] = ()) -> str:
    """``space`` as a space file (what `spaces show` prints and `--space FILE` reads back)."""
    raw = space.to_dict()
    lines = [f"# {c}" for c in comments]
    lines.append(f"name = {_toml_value(raw['name'])}")
    lines.append(f"description = {_toml_value(raw['description'])}")
    if "fit" in raw:
        lines.append(f"fit = {_toml_value(raw['fit'])}")
    lines += ["", "[dimensions]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in raw["dimensions"].items()]
    for point in raw.get("start", []):
        lines += ["", "[[start]]"] + [f"{k} = {_toml_value(v)}" for k, v in point.items()]
    return "\n".join(lines) + "\n"
