"""Space files: the built-in catalogue, and one clear line for every kind of bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli import app
from spaces import Choice, IntRange, builtin_names, load_space

BUILTINS = {"default", "elman-jordan-bi", "cells", "deep-bilstm"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_builtin_catalogue_lists_and_shows_every_space():
    assert set(builtin_names()) == BUILTINS
    listed = invoke("spaces", "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert {r["name"] for r in json.loads(listed.stdout)} == BUILTINS
    for name in BUILTINS:
        shown = invoke("spaces", "show", name, "--format", "json")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["name"] == name
        assert invoke("spaces", "validate", name).exit_code == 0


def test_builtin_spaces_cover_the_exercises():
    ejb = load_space("elman-jordan-bi")
    assert isinstance(ejb["cell"], Choice) and set(ejb["cell"].values) == {"simple", "jordan"}
    assert set(ejb["bidirectional"].values) == {False, True}
    assert set(ejb["maxlen"].values) == {100, 500}
    # activation only for simple and jordan; merge_mode only when bidirectional
    assert ejb["merge_mode"].when.parent == "bidirectional"
    cells = load_space("cells")
    assert set(cells["cell"].values) == {"simple", "lstm", "gru"}
    units = cells["units"]
    assert isinstance(units, IntRange) and (units.low, units.high, units.step) == (32, 512, 32)
    assert set(cells["learning_rate"].values) == {1e-2, 1e-3, 1e-4}
    deep = load_space("deep-bilstm")
    assert deep["cell"].value == "lstm" and deep["bidirectional"].value is True
    assert deep["layers"].low >= 2
    assert isinstance(deep["optimizer"], Choice) and len(deep["optimizer"].values) > 1
    assert isinstance(deep["recurrent_dropout"], Choice)


def test_spaces_import_without_tensorflow():
    code = (
        "import sys, spaces, storage; spaces.load_space('deep-bilstm'); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


GOOD = 'cell = "simple"\nunits = 8\n'

#: (file body, dimension named in the message, what the message must say)
BAD_FILES = [
    ("[dimensions]\ncolour = 3\n", "colour", "unknown dimension"),
    ('[dimensions]\ncell = { choice = ["simple", "elman2"] }\n', "cell", 'got "elman2"'),
    ("[dimensions]\nunits = { low = 64, high = 32 }\n", "units", "expected low <= high"),
    (
        "[dimensions]\nlearning_rate = { low = 0.0, high = 0.1, log = true }\n",
        "learning_rate",
        "a log range needs low > 0",
    ),
    ("[dimensions]\noptimizer = { choice = [] }\n", "optimizer", "expected at least one value"),
    ('[dimensions]\nunits = "many"\n', "units", 'expected an integer, got "many"'),
    ('[dimensions]\nbidirectional = "yes"\n', "bidirectional", "expected a boolean"),
    (
        '[dimensions]\nmerge_mode = { choice = ["sum"], when = { wings = [true] } }\n',
        "merge_mode",
        "condition on unknown dimension 'wings'",
    ),
    (
        '[dimensions]\nmerge_mode = { choice = ["sum"], when = { bidirectional = [true] } }\n',
        "merge_mode",
        "not a dimension of this space",
    ),
    ("[dimensions]\nunits = { low = 4 high = 8 }\n", "", "TOML syntax error"),
    ("[dimensions]\nlayers = 4\n", "layers", "expected a value <= 3"),
    ("[dimensions]\ndropout = 1.0\n", "dropout", "expected a value < 1"),
    (
        "[dimensions]\nlearning_rate = { low = 1e-4, high = 1e-2, step = 1e-4, log = true }\n",
        "learning_rate",
        "log and step cannot be combined",
    ),
    ("[dimensions]\nunits = { low = 4 }\n", "units", "needs both low and high"),
    ("[dimensions]\ncell = { low = 1, high = 2 }\n", "cell", "a range needs a numeric dimension"),
    ('colour = "red"\n[dimensions]\nunits = 8\n', "", "unknown top-level keys ['colour']"),
    ('name = "empty"\n', "", "expected a [dimensions] table"),
    (
        "[dimensions]\nbidirectional = false\n"
        'merge_mode = { choice = ["sum"], when = { bidirectional = [true] } }\n',
        "merge_mode",
        "bidirectional only takes [False]",
    ),
    ("[dimensions]\nbatch_size = { choice = [32, 32] }\n", "batch_size", "must be distinct"),
    ("[dimensions]\nunits = { low = 4, high = 8, step = 0 }\n", "units", "positive integer"),
    ('[dimensions]\nactivation = "sigmoid"\n', "activation", "expected one of tanh, relu"),
    ("[dimensions]\nunits = 8.5\n", "units", "expected an integer, got 8.5"),
    (
        "[dimensions]\nunits = { low = 4, high = 8 }\n[[start]]\nunits = 16\n",
        "units",
        "start[0].units: 16 lies outside the dimension",
    ),
    (
        '[dimensions]\nunits = { low = 4, high = 8 }\n[[start]]\ncell = "gru"\n',
        "cell",
        "start[0]: cell is not a dimension of this space",
    ),
    (
        '[dimensions]\ncell = { choice = ["gru", "lstm"] }\nunits = { low = 4, high = 8 }\n'
        '[[start]]\ncell = "gru"\n',
        "units",
        "start[0]: expected a value for units",
    ),
]


@pytest.mark.parametrize(("body", "dimension", "expected"), BAD_FILES)
def test_bad_space_file_gets_one_line_and_exit_2(tmp_path: Path, body, dimension, expected):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = invoke("spaces", "validate", str(path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert str(path) in line and expected in line, line
    if dimension:
        assert dimension in line, line


@pytest.mark.parametrize(("body", "dimension", "expected"), BAD_FILES[:6])
def test_run_refuses_a_bad_space_before_touching_the_database(
    tmp_path: Path, body, dimension, expected
):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    db = tmp_path / "study.db"
    result = invoke("run", "--study", "s", "--space", str(path), "--storage", f"sqlite:///{db}")
    assert result.exit_code == 2
    assert expected in result.output and len(result.output.strip().splitlines()) == 1
    assert not db.exists()


def test_start_points_are_the_active_searched_values():
    from spaces.loader import parse_space_text

    space = parse_space_text(
        '[dimensions]\ncell = { choice = ["gru", "lstm"] }\n'
        "bidirectional = { choice = [false, true] }\n"
        'merge_mode = { choice = ["sum", "concat"], when = { bidirectional = [true] } }\n'
        "maxlen = 100\n"
        '[[start]]\ncell = "gru"\nbidirectional = false\n'
        '[[start]]\ncell = "lstm"\nbidirectional = true\nmerge_mode = "sum"\n',
        "s.toml",
    )
    assert space.start_points() == [
        {"cell": "gru", "bidirectional": False},
        {"cell": "lstm", "bidirectional": True, "merge_mode": "sum"},
    ]
    # Start points do not change what the space is (its fingerprint).
    assert (
        space.fingerprint
        == parse_space_text(
            '[dimensions]\ncell = { choice = ["gru", "lstm"] }\n'
            "bidirectional = { choice = [false, true] }\n"
            'merge_mode = { choice = ["sum", "concat"], when = { bidirectional = [true] } }\n'
            "maxlen = 100\n",
            "t.toml",
        ).fingerprint
    )


def test_missing_space_file_and_unknown_builtin(tmp_path: Path):
    missing = invoke("spaces", "validate", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "no such space file" in missing.output
    unknown = invoke("spaces", "validate", "no-such-space")
    assert unknown.exit_code == 2 and "built-in spaces are" in unknown.output
