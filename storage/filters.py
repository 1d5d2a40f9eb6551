"""The ``--where`` filter language: a small tokenizer and recursive-descent parser, and
:func:`where_filter`, which checks a filter against a study's parameters.

A filter is parsed into a tree and evaluated in Python against each trial's configuration; it is
never pasted into SQL. Grammar (keywords are case-insensitive)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | comparison
    comparison := NAME OP value | NAME ["not"] "in" "(" value ("," value)* ")"
    OP         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := "true" | "false" | INT | FLOAT | 'quoted' | "quoted" | bare-word

Values are typed: ``true``/``false`` are booleans, ``8`` an integer, ``1e-3`` a float, anything
else a string (quote it to force a string). A trial that lacks the parameter (a conditional
dimension that was inactive) matches no comparison on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.database import StudyDatabase
    from storage.records import TrialRecord

OPERATORS = ("=", "==", "!=", "<", "<=", ">", ">=")
KEYWORDS = ("and", "or", "not", "in")
#: Longest filter text accepted, and deepest nesting of parentheses and ``not``: the parser is
#: recursive, and a filter deeper than this is a mistake or an attack, not a query.
MAX_LENGTH = 4000
MAX_DEPTH = 50


class FilterError(ValueError):
    """A filter that cannot be parsed or does not fit the study; says what was expected."""


@dataclass(frozen=True)
class Token:
    kind: str  # name, op, lparen, rparen, comma, string, end
    text: str
    pos: int  # 1-based column in the filter text


@dataclass(frozen=True)
class Value:
    value: bool | int | float | str
    text: str
    quoted: bool

    def describe(self) -> str:
        return repr(self.value) if self.quoted else self.text


@dataclass(frozen=True)
class Compare:
    name: str
    op: str  # one of OPERATORS (== normalised to =), "in" or "not in"
    values: tuple[Value, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" or "or"
    operands: tuple[Node, ...]


Node = Compare | Not | BoolOp

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op><=|>=|!=|==|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<name>[A-Za-z0-9_.+\-]+)
    """,
    re.VERBOSE,
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            ch = text[i]
            if ch in "'\"":
                raise FilterError(f"unterminated quoted string starting at column {i + 1}")
            raise FilterError(f"unexpected character {ch!r} at column {i + 1}")
        kind = m.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, m.group(), i + 1))
        i = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _typed(tok: Token) -> Value:
    if tok.kind == "string":
        return Value(tok.text[1:-1], tok.text, True)
    low = tok.text.lower()
    if low in ("true", "false"):
        return Value(low == "true", tok.text, False)
    if _INT.fullmatch(tok.text):
        return Value(int(tok.text), tok.text, False)
    if _FLOAT.fullmatch(tok.text):
        return Value(float(tok.text), tok.text, False)
    return Value(tok.text, tok.text, False)


def _where(tok: Token) -> str:
    return "at the end" if tok.kind == "end" else f"at column {tok.pos}, got {tok.text!r}"


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise FilterError(
                f"expected a filter of at most {MAX_LENGTH} characters, got {len(text)}"
            )
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(
                f"expected at most {MAX_DEPTH} nested parentheses or 'not's, got more "
                f"{_where(self.tok)}"
            )

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _keyword(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.text.lower() == word

    def _advance(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise FilterError("empty filter; expected e.g. cell=lstm and bidirectional=true")
        node = self.or_expr()
        if self.tok.kind != "end":
            raise FilterError(f"expected 'and', 'or' or the end of the filter {_where(self.tok)}")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self._keyword("or"):
            self._advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self._keyword("and"):
            self._advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_expr(self) -> Node:
        if self._keyword("not"):
            self._advance()
            self._enter()
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        if self.tok.kind == "lparen":
            self._advance()
            self._enter()
            node = self.or_expr()
            if self.tok.kind != "rparen":
                raise FilterError(f"expected ')' {_where(self.tok)}")
            self._advance()
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        tok = self.tok
        if tok.kind != "name" or tok.text.lower() in KEYWORDS or not _NAME.fullmatch(tok.text):
            raise FilterError(f"expected a parameter name {_where(tok)}")
        self._advance()
        if self.tok.kind == "op":
            op = self._advance().text
            return Compare(tok.text, "=" if op == "==" else op, (self.value(),), tok.pos)
        negate = False
        if self._keyword("not"):
            self._advance()
            negate = True
            if not self._keyword("in"):
                raise FilterError(f"expected 'in' after {tok.text} not {_where(self.tok)}")
        if self._keyword("in"):
            self._advance()
            if self.tok.kind != "lparen":
                raise FilterError(f"expected '(' after {tok.text} in {_where(self.tok)}")
            self._advance()
            values = [self.value()]
            while self.tok.kind == "comma":
                self._advance()
                values.append(self.value())
            if self.tok.kind != "rparen":
                raise FilterError(
                    f"expected ',' or ')' in the list of {tok.text} {_where(self.tok)}"
                )
            self._advance()
            return Compare(tok.text, "not in" if negate else "in", tuple(values), tok.pos)
        raise FilterError(
            f"expected an operator (=, !=, <, <=, >, >=, in) after {tok.text} {_where(self.tok)}"
        )

    def value(self) -> Value:
        tok = self.tok
        if tok.kind == "string" or (tok.kind == "name" and tok.text.lower() not in KEYWORDS):
            self._advance()
            return _typed(tok)
        raise FilterError(f"expected a value {_where(tok)}")


def parse(text: str) -> Node:
    """The filter's syntax tree, or a FilterError saying what was expected where."""
    return _Parser(text).parse()


def comparisons(node: Node) -> list[Compare]:
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, Not):
        return comparisons(node.operand)
    return [c for n in node.operands for c in comparisons(n)]


def _kind(t: type | None) -> str | None:
    if t is None:
        return None
    if t is bool:
        return "bool"
    if t in (int, float):
        return "number"
    return "string"


def _value_kind(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "string"


def _coerce(cmp: Compare, kind: str | None) -> Compare:
    """Check a comparison against its parameter's type (a bare number may name a string)."""
    values = []
    for v in cmp.values:
        vk = _value_kind(v.value)
        if kind is None or vk == kind:
            values.append(v)
        elif kind == "string" and not v.quoted:
            values.append(Value(v.text, v.text, True))
        else:
            want = {"bool": "true or false", "number": "a number", "string": "a string"}[kind]
            raise FilterError(f"{cmp.name} {cmp.op} {v.describe()}: expected {want} for {cmp.name}")
    if cmp.op in ("<", "<=", ">", ">=") and kind in ("bool", "string"):
        raise FilterError(
            f"{cmp.name} {cmp.op} ...: {cmp.name} is not numeric; expected =, != or in"
        )
    return Compare(cmp.name, cmp.op, tuple(values), cmp.pos)


def _check(
    node: Node,
    types: Mapping[str, type | None],
    choices: Mapping[str, Sequence[Any]],
) -> Node:
    if isinstance(node, Compare):
        if node.name not in types:
            known = ", ".join(sorted(types))
            raise FilterError(f"unknown parameter {node.name!r}; expected one of: {known}")
        checked = _coerce(node, _kind(types[node.name]))
        allowed = choices.get(node.name)
        if allowed and checked.op in ("=", "!=", "in", "not in"):
            for v in checked.values:
                if not any(
                    _value_kind(a) == _value_kind(v.value) and a == v.value for a in allowed
                ):
                    shown = ", ".join(
                        str(a).lower() if isinstance(a, bool) else str(a) for a in allowed
                    )
                    raise FilterError(
                        f"{node.name} {node.op} {v.describe()}: expected one of {shown}"
                    )
        return checked
    if isinstance(node, Not):
        return Not(_check(node.operand, types, choices))
    return BoolOp(node.op, tuple(_check(n, types, choices) for n in node.operands))


def _eval(node: Node, config: Mapping[str, Any]) -> bool:
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(_eval(n, config) for n in node.operands)
        return any(_eval(n, config) for n in node.operands)
    if isinstance(node, Not):
        return not _eval(node.operand, config)
    if node.name not in config or config[node.name] is None:
        return False
    actual = config[node.name]
    ak = _value_kind(actual)
    wanted = [v.value for v in node.values if _value_kind(v.value) == ak]
    if node.op in ("in", "=", "not in", "!="):
        found = any(actual == w for w in wanted)
        return found if node.op in ("in", "=") else not found
    if not wanted or ak != "number":
        return False
    w = wanted[0]
    return {
        "<": actual < w,
        "<=": actual <= w,
        ">": actual > w,
        ">=": actual >= w,
    }[node.op]


@dataclass(frozen=True)
class Filter:
    """A parsed, type-checked filter; call it on a trial's configuration."""

    text: str
    tree: Node

    def __call__(self, config: Mapping[str, Any]) -> bool:
        return _eval(self.tree, config)

    @property
    def names(self) -> list[str]:
        return sorted({c.name for c in comparisons(self.tree)})


def compile_filter(
    text: str,
    types: Mapping[str, type | None] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> Filter:
    """Parse ``text`` and, given ``types`` (parameter name -> Python type, or None if unknown)
    and optionally each categorical parameter's ``choices``, check every name and value against
    them. Raises FilterError with a one-line message."""
    tree = parse(text)
    if types is not None:
        tree = _check(tree, types, choices or {})
    return Filter(text, tree)


def parameter_types(
    db: StudyDatabase, study: str, trials: Sequence[TrialRecord] | None = None
) -> tuple[dict[str, type | None], dict[str, tuple[Any, ...]]]:
    """Parameter name -> Python type, and the allowed values of categorical parameters: every
    known dimension, plus the parameters of studies that plain Optuna created."""
    from spaces.space import KNOWN_DIMENSIONS

    types: dict[str, type | None] = {n: spec.type for n, spec in KNOWN_DIMENSIONS.items()}
    choices: dict[str, tuple[Any, ...]] = {
        n: spec.choices for n, spec in KNOWN_DIMENSIONS.items() if spec.choices
    }
    choices["bidirectional"] = (False, True)
    if db.study_config(study) is None:
        # A study plain Optuna created: its parameters are whatever its trials hold.
        for t in trials if trials is not None else db.trials(study):
            for name, value in {**t.params, **t.config}.items():
                if name not in types:
                    types[name] = type(value) if value is not None else None
    return types, choices


def where_filter(
    db: StudyDatabase, study: str, text: str, trials: Sequence[TrialRecord] | None = None
) -> Filter:
    """``--where`` for a given study: the parsed filter, checked against the parameters a trial
    configuration can hold, or a FilterError naming the option and saying what was expected."""
    shown = repr(text) if len(text) <= 60 else repr(text[:57]) + "..."
    try:
        tree = parse(text)
    except FilterError as exc:
        raise FilterError(f"--where {shown}: {exc}") from None
    types, choices = parameter_types(db, study, trials)
    try:
        return Filter(text, _check(tree, types, choices))
    except FilterError as exc:
        raise FilterError(f"--where {shown}: {exc}") from None
