"""The shipped diamonds table: offline, complete, canonical dtypes."""

from __future__ import annotations

import socket

import pandas as pd
import pytest

from driftkeeper.data import DIAMONDS_ROWS, frame_hash, load_diamonds
from driftkeeper.errors import DataError
from driftkeeper.schema import CLARITY_LEVELS, COLOR_LEVELS, CUT_LEVELS, DIAMONDS_SCHEMA


def test_loads_offline(monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("load_diamonds tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    frame = load_diamonds()
    assert len(frame) == DIAMONDS_ROWS


def test_canonical_dtypes_and_ggplot2_level_order(diamonds: pd.DataFrame) -> None:
    assert list(diamonds.columns) == [*DIAMONDS_SCHEMA.names, "price"]
    for name, levels in (("cut", CUT_LEVELS), ("color", COLOR_LEVELS),
                         ("clarity", CLARITY_LEVELS)):
        dtype = diamonds[name].dtype
        assert isinstance(dtype, pd.CategoricalDtype) and dtype.ordered
        assert tuple(dtype.categories) == levels
    for name in ("carat", "depth", "table", "price"):
        assert diamonds[name].dtype == "float64"
    assert CUT_LEVELS[0] == "Fair" and CUT_LEVELS[-1] == "Ideal"
    assert diamonds["cut"].min() == "Fair"  # ordered: comparisons follow the level order


def test_known_content(diamonds: pd.DataFrame) -> None:
    first = diamonds.iloc[0]
    assert (first.carat, first.cut, first.color, first.clarity, first.price) == (
        0.23, "Ideal", "E", "SI2", 326.0)
    assert diamonds["price"].max() == 18823.0


def test_user_csv_with_same_columns(tmp_path, diamonds: pd.DataFrame) -> None:
    path = tmp_path / "mine.csv"
    diamonds.head(50).astype({"cut": str}).to_csv(path, index=False)
    frame = load_diamonds(path)
    assert len(frame) == 50 and frame["cut"].dtype.ordered
    assert frame_hash(frame) == frame_hash(load_diamonds(path))
    assert frame_hash(frame) != frame_hash(diamonds.head(51))


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns=["depth"]), "missing column"),
    (lambda f: f.assign(cut=["Superb"] + ["Ideal"] * (len(f) - 1)), "unknown categories"),
    (lambda f: f.assign(carat=["heavy"] + [0.3] * (len(f) - 1)), "carat"),
])
def test_bad_user_csv_names_the_column(tmp_path, diamonds, change, message) -> None:
    path = tmp_path / "bad.csv"
    change(diamonds.head(10).astype({"cut": str})).to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        load_diamonds(path)


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_diamonds(tmp_path / "nope.csv")


def test_encode_marks_unseen_and_missing(diamonds: pd.DataFrame) -> None:
    raw = diamonds.head(3).astype({"cut": object})
    raw.loc[0, "cut"] = "Superb"
    raw.loc[1, "cut"] = None
    encoded = DIAMONDS_SCHEMA.encode(raw)
    assert encoded[0, 1] == -1
    assert pd.isna(encoded[1, 1])
    assert encoded[2, 1] == CUT_LEVELS.index(raw.loc[2, "cut"])
    roundtrip = DIAMONDS_SCHEMA.decode(DIAMONDS_SCHEMA.encode(diamonds.head(100)))
    pd.testing.assert_frame_equal(roundtrip, diamonds.head(100)[DIAMONDS_SCHEMA.names])
