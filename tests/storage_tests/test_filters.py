"""The --where language on its own: parsing, typing, precedence, errors (no database)."""

from __future__ import annotations

import pytest

from storage.filters import BoolOp, Compare, FilterError, Not, compile_filter, parse

TYPES = {"cell": str, "bidirectional": bool, "units": int, "maxlen": int, "learning_rate": float}
CHOICES = {"cell": ("simple", "jordan", "lstm", "gru"), "bidirectional": (False, True)}
LSTM_BI = {"cell": "lstm", "bidirectional": True, "units": 6, "maxlen": 20, "learning_rate": 0.01}
ELMAN = {"cell": "simple", "bidirectional": False, "units": 4, "maxlen": 40, "learning_rate": 0.001}


def matches(text: str, config: dict) -> bool:
    return compile_filter(text, TYPES, CHOICES)(config)


def test_values_are_typed():
    [cmp] = [parse("units = 8")]
    assert isinstance(cmp, Compare) and cmp.values[0].value == 8
    assert parse("learning_rate < 1e-3").values[0].value == pytest.approx(0.001)
    assert parse("bidirectional = TRUE").values[0].value is True
    assert parse("cell = 'lstm'").values[0].value == "lstm"
    assert parse('cell == "gru"').op == "="


def test_and_binds_tighter_than_or_and_parentheses_override():
    tree = parse("cell=lstm or cell=gru and units>4")
    assert isinstance(tree, BoolOp) and tree.op == "or"
    assert isinstance(tree.operands[1], BoolOp) and tree.operands[1].op == "and"
    tree = parse("(cell=lstm or cell=gru) and units>4")
    assert tree.op == "and"
    assert isinstance(parse("not cell=lstm"), Not)


@pytest.mark.parametrize(
    ("text", "lstm_bi", "elman"),
    [
        ("cell=lstm and bidirectional=true", True, False),
        ("cell != lstm", False, True),
        ("units >= 6", True, False),
        ("units < 5", False, True),
        ("units <= 4 or maxlen > 30", False, True),
        ("cell in (simple, jordan)", False, True),
        ("cell not in (simple, jordan)", True, False),
        ("not (cell=lstm and maxlen=20)", False, True),
        ("learning_rate > 0.005", True, False),
        ("maxlen in (20, 40) and bidirectional = false", False, True),
    ],
)
def test_filters_match_configurations(text: str, lstm_bi: bool, elman: bool):
    assert matches(text, LSTM_BI) is lstm_bi
    assert matches(text, ELMAN) is elman


def test_missing_parameter_matches_no_comparison():
    f = compile_filter("merge_mode = concat", {"merge_mode": str})
    assert f({"cell": "lstm"}) is False
    assert f({"merge_mode": "concat"}) is True


def test_bare_number_compares_with_a_string_parameter_as_text():
    f = compile_filter("tag = 10", {"tag": str})
    assert f({"tag": "10"}) and not f({"tag": 10})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty filter"),
        ("cell=", "expected a value"),
        ("cell lstm", "expected an operator"),
        ("cell=lstm and", "expected a parameter name"),
        ("(cell=lstm", "expected ')'"),
        ("cell=lstm)", "expected 'and', 'or' or the end"),
        ("cell in lstm", "expected '('"),
        ("cell in (lstm", "expected ',' or ')'"),
        ("cell='lstm", "unterminated quoted string"),
        ("cell=lstm; drop table trials", "unexpected character ';'"),
        ("colour=red", "unknown parameter 'colour'"),
        ("units=many", "expected a number for units"),
        ("bidirectional=1", "expected true or false"),
        ("cell > lstm", "not numeric"),
        ("cell=lsmt", "expected one of simple, jordan, lstm, gru"),
    ],
)
def test_malformed_filters_say_what_was_expected(text: str, expected: str):
    with pytest.raises(FilterError) as info:
        compile_filter(text, TYPES, CHOICES)
    message = str(info.value)
    assert expected in message and "\n" not in message
