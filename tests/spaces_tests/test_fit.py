"""The data-fitted space (spaces.fit), pure: statistics in, a validated space out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spaces import Choice, Fixed, IntRange, Space, SpaceError, load_space, parse_space_text
from spaces.fit import (
    MAXLEN_CAP,
    VOCAB_CAP,
    DataStats,
    fit_record,
    fit_space,
    is_template_of,
)
from spaces.space import space_toml


def stats(**over) -> DataStats:
    base = dict(
        kind="tokens",
        examples=20_000,
        num_classes=2,
        length_min=4,
        length_p50=178,
        length_p90=469,
        length_p99=925,
        length_max=2494,
        words_seen_twice=45_658,
        first_word_id=3,
    )
    return DataStats(**{**base, **over})


SHORT_TEXT = stats(
    examples=8_899,
    num_classes=3,
    length_min=1,
    length_p50=19,
    length_p90=37,
    length_p99=184,
    length_max=1056,
    words_seen_twice=12_192,
    first_word_id=2,
)
LONG_TEXT = stats(length_p50=2_300, length_p90=6_100, length_p99=9_800, length_max=20_000)
NUMERIC_FIXED = DataStats("numeric", 1_920, 6, 60, 60, 60, 60, 60, features=1)
NUMERIC_VARIABLE = DataStats("numeric", 216, 9, 7, 15, 21, 24, 26, features=12)


@pytest.fixture(scope="module")
def default() -> Space:
    return load_space("default")


def test_the_default_space_is_a_template_and_others_are_not(default: Space):
    assert default.fit == "data"
    assert all(load_space(n).fit is None for n in ("cells", "deep-bilstm", "elman-jordan-bi"))
    # A space that is not a template comes back unchanged.
    assert fit_space(load_space("cells"), SHORT_TEXT) == load_space("cells")


def test_imdb_sized_text_keeps_the_tuned_sizes(default: Space):
    fitted = fit_space(default, stats())
    assert fitted.fit is None
    assert fitted["maxlen"] == Choice("maxlen", (180, 470, 930))
    assert fitted["embedding_dim"] == Choice("embedding_dim", (32, 64))
    assert fitted["units"] == IntRange("units", 16, 256, 1, True)
    assert fitted["batch_size"] == Fixed("batch_size", 64)
    # a quarter of and all the words seen twice (2 significant digits), plus ids 0-2
    assert fitted["vocab_size"] == Choice("vocab_size", (12_003, 46_003))


def test_short_texts_get_short_maxlens_and_a_smaller_vocabulary(default: Space):
    fitted = fit_space(default, SHORT_TEXT)
    assert fitted["maxlen"].values == (19, 37, 190)
    assert fitted["vocab_size"].values == (3_102, 13_002)
    assert fitted["embedding_dim"].values == (32, 64)
    assert (fitted["units"].low, fitted["units"].high) == (16, 256)
    # the start points keep their ranks: the short GRU at the median length, the others at p90
    starts = fitted.start_points()
    assert [p["maxlen"] for p in starts] == [19, 37, 37]
    assert [p["vocab_size"] for p in starts] == [3_102, 13_002, 13_002]
    assert [p["units"] for p in starts] == [32, 64, 64]
    assert starts[0]["learning_rate"] == 0.003  # not a fitted dimension: unchanged


def test_long_documents_are_capped_not_cut_at_400(default: Space):
    fitted = fit_space(default, LONG_TEXT)
    assert fitted["maxlen"] == Fixed("maxlen", MAXLEN_CAP)  # every percentile is beyond the cap
    huge = fit_space(default, stats(words_seen_twice=400_000))
    assert max(huge["vocab_size"].values) == VOCAB_CAP + 3


def test_numeric_fixed_length_has_no_vocabulary_or_embedding(default: Space):
    fitted = fit_space(default, NUMERIC_FIXED)
    assert "vocab_size" not in fitted and "embedding_dim" not in fitted
    assert fitted["maxlen"] == Fixed("maxlen", 60)
    assert fitted["batch_size"] == Fixed("batch_size", 16)
    assert (fitted["units"].low, fitted["units"].high) == (4, 64)
    for point in fitted.start_points():
        assert set(point) == {
            "cell",
            "units",
            "bidirectional",
            "head",
            "dropout",
            "learning_rate",
        }
        assert 4 <= point["units"] <= 64
    assert fitted.resolve(fitted.start_points()[0])["maxlen"] == 60


def test_numeric_variable_length_many_classes(default: Space):
    fitted = fit_space(default, NUMERIC_VARIABLE)
    assert "vocab_size" not in fitted and "embedding_dim" not in fitted
    assert fitted["maxlen"].values == (15, 21, 24)
    assert [p["maxlen"] for p in fitted.start_points()] == [15, 21, 21]
    assert "9 classes" in fitted.description


def test_fitted_space_is_stored_and_read_back_and_its_template_recognised(default: Space):
    fitted = fit_space(default, SHORT_TEXT)
    again = Space.from_json(fitted.to_json())
    assert again == fitted and again.start == fitted.start
    assert parse_space_text(space_toml(fitted), "shown") == fitted
    record = fit_record(default, SHORT_TEXT)
    assert record["stats"]["words_seen_twice"] == 12_192
    assert DataStats.from_dict(record["stats"]) == SHORT_TEXT
    assert is_template_of(default, record)
    assert not is_template_of(fitted, record)  # a fitted space is not a template
    assert not is_template_of(load_space("cells"), record)


def test_fit_key_is_validated():
    dims = {"units": {"low": 4, "high": 8}}
    assert Space.from_dict({"name": "x", "fit": "data", "dimensions": dims}).fit == "data"
    with pytest.raises(SpaceError, match=r'x: fit: expected one of "data", got "model"'):
        Space.from_dict({"name": "x", "fit": "model", "dimensions": dims}, source="x")


def test_bad_statistics_are_refused():
    with pytest.raises(SpaceError, match="at least one example"):
        stats(examples=0)
    with pytest.raises(SpaceError, match="words_seen_twice"):
        stats(words_seen_twice=None)


def test_spaces_fit_imports_without_tensorflow_or_numpy():
    code = (
        "import sys, spaces.fit; "
        "bad = [m for m in ('tensorflow', 'keras', 'optuna', 'numpy') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_template_that_fixed_maxlen_gets_start_points_for_the_fitted_choice():
    template = Space.from_dict(
        {
            "name": "mine",
            "fit": "data",
            "dimensions": {"cell": {"choice": ["gru", "lstm"]}, "maxlen": 200},
            "start": [{"cell": "gru"}],
        }
    )
    fitted = fit_space(template, SHORT_TEXT)
    assert fitted["maxlen"].values == (19, 37, 190)
    assert fitted.start_points() == [{"cell": "gru", "maxlen": 19}]
    # dimensions the template leaves out are not added: they keep their defaults
    assert (
        "vocab_size" not in fitted
        and fitted.resolve({"cell": "gru", "maxlen": 19})["vocab_size"] == 10_000
    )


def test_numeric_trials_resolve_without_vocabulary_or_embedding():
    space = Space.from_dict({"name": "s", "dimensions": {"cell": "gru", "units": 8}})
    numeric = space.resolve({}, max_epochs=2, token_input=False)
    assert "vocab_size" not in numeric and "embedding_dim" not in numeric
    assert numeric["units"] == 8 and numeric["epochs"] == 2 and numeric["maxlen"] > 0
    tokens = space.resolve({}, max_epochs=2)
    assert set(tokens) - set(numeric) == {"vocab_size", "embedding_dim"}
