"""Schema inference: a feature schema from any table, and every refusal naming the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.data import bundled_diamonds, load_table, read_csv
from driftkeeper.errors import SchemaError, TrainingError
from driftkeeper.inference import (
    BOUNDS_MARGIN,
    MAX_LEVELS,
    ColumnDeclaration,
    describe,
    infer_from_csv,
    infer_schema,
    inferred_bounds,
    read_schema_file,
)
from driftkeeper.model.train import train
from driftkeeper.schema import DIAMONDS_SCHEMA, FeatureSchema, Target


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "weight": [1.5, 2.0, 3.5, 4.0, 2.5, 3.0],
        "temp": [-5.0, 0.0, 5.0, 10.0, 3.0, 1.0],
        "city": ["Oslo", "Bergen", "Oslo", "Tromsø", "Bergen", "Oslo"],
        "zone": [3, 1, 2, 3, 1, 10],
        "member": [True, False, True, True, False, False],
        "note": ["a", "b", "c", "d", "e", "f"],
        "y": [10.5, 20.25, 30.0, 41.0, 18.5, 25.0],
    })


def _kinds(schema: FeatureSchema) -> dict[str, str]:
    return {f.name: f.kind for f in schema.features}


def test_kinds_levels_and_bounds_of_a_small_table(frame: pd.DataFrame) -> None:
    assert infer_schema(frame, "y", drop=["note"]).target.task == "classification"  # 6 values
    schema = infer_schema(frame, "y", task="regression", drop=["note"])
    assert schema.names == ["weight", "temp", "city", "zone", "member"]  # column order
    assert _kinds(schema) == {"weight": "numerical", "temp": "numerical",
                              "city": "categorical", "zone": "numerical",
                              "member": "categorical"}
    assert schema.feature("city").levels == ("Bergen", "Oslo", "Tromsø")  # sorted
    assert schema.feature("member").levels == ("False", "True")
    weight, temp = schema.feature("weight"), schema.feature("temp")
    # weight: every value positive, so the lower bound stops at 0; 4.0 + 10 * 2.5 = 29
    assert (weight.exclusive_minimum, weight.maximum) == (0.0, 29.0)
    # temp: signed, 10 ranges (150) each side
    assert (temp.exclusive_minimum, temp.maximum) == (-155.0, 160.0)
    assert schema.target == Target("y", 0.0, 346.0, task="regression")


def test_categorical_override_orders_numbers_by_value(frame: pd.DataFrame) -> None:
    schema = infer_schema(frame, "y", categorical=["zone"], drop=["note", "member"])
    zone = schema.feature("zone")
    assert zone.kind == "categorical" and zone.levels == ("1", "2", "3", "10")
    assert "member" not in schema.names and "note" not in schema.names


def test_a_user_table_loads_and_encodes_through_its_schema(frame: pd.DataFrame,
                                                            tmp_path: Path) -> None:
    """Integer and boolean categories are compared as text, in the CSV and the schema."""
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    schema = infer_from_csv(path, "y", task="regression", categorical=["zone"], drop=["note"])
    loaded = load_table(path, schema)
    assert list(loaded.columns) == [*schema.names, "y"]
    X = schema.encode(loaded)
    assert np.isfinite(X).all() and schema.complete_rows(X).all()
    assert X[:, schema.index("zone")].tolist() == [2.0, 0.0, 1.0, 2.0, 0.0, 3.0]
    assert X[:, schema.index("member")].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    raw = schema.encode(read_csv(path))  # unconverted frames (drift CSVs) encode the same
    np.testing.assert_array_equal(raw, X)


@pytest.mark.parametrize(("low", "high", "expected"), [
    (326.0, 18823.0, (0.0, 204_000.0)),     # diamond prices: positive, clamped at 0
    (0.0, 5.0, (-50.0, 55.0)),               # non-negative is not positive: no clamp
    (2000.0, 2020.0, (1800.0, 2220.0)),      # positive, far from 0: the margin holds
    (-0.107, 0.111, (-2.29, 2.3)),
    (0.1, 0.4, (0.0, 3.4)),                  # 0.4 + 3.0 in floats is 3.4000000000000004
])
def test_bounds_margin(low: float, high: float, expected: tuple[float, float]) -> None:
    lo, hi = inferred_bounds(low, high)
    assert (lo, hi) == pytest.approx(expected)
    spread = BOUNDS_MARGIN * (high - low)
    noise = 1e-9 * spread  # floating-point noise is rounded away, not outwards
    assert lo <= max(low - spread, 0.0 if low > 0 else -np.inf) + noise
    assert hi >= high + spread - noise


def test_diamonds_table_gives_the_diamonds_kinds_and_levels(diamonds: pd.DataFrame) -> None:
    """From the canonical frame (ordered categoricals) the levels keep their order; from
    the raw CSV they are the same sets, sorted."""
    schema = infer_schema(diamonds, "price")
    assert [(f.name, f.kind, f.levels) for f in schema.features] == [
        (f.name, f.kind, f.levels) for f in DIAMONDS_SCHEMA.features]
    raw = infer_schema(read_csv(bundled_diamonds()), "price", drop=["x", "y", "z"])
    assert raw.names == DIAMONDS_SCHEMA.names
    for inferred, known in zip(raw.features, DIAMONDS_SCHEMA.features, strict=True):
        assert inferred.kind == known.kind
        assert sorted(inferred.levels) == sorted(known.levels)
        if known.kind == "numerical":  # every diamond lies inside the inferred bounds
            values = diamonds[known.name]
            assert inferred.exclusive_minimum == 0.0 and values.max() < inferred.maximum
    assert raw.target.task == "regression" and raw.target.exclusive_minimum == 0.0


@pytest.mark.parametrize(("y", "task", "classes"), [
    (np.arange(100) * 3, "regression", ()),                       # many distinct values
    ([0.5, 1.0, 1.5, 2.0] * 5, "classification", ("0.5", "1", "1.5", "2")),
    (np.arange(21) / 2, "regression", ()),                        # 21 values: a quantity
    ([0, 1, 1, 0] * 5, "classification", ("0", "1")),
    ([3, 1, 2, 10] * 5, "classification", ("1", "2", "3", "10")),
    (["no", "yes", "yes", "maybe"] * 5, "classification", ("maybe", "no", "yes")),
    ([True, False] * 10, "classification", ("False", "True")),
])
def test_task_rule(y, task: str, classes: tuple[str, ...]) -> None:
    frame = pd.DataFrame({"x": np.arange(len(y), dtype=float), "label": y})
    target = infer_schema(frame, "label").target
    assert (target.task, target.classes) == (task, classes)
    if task == "classification":
        assert target.exclusive_minimum is None and target.maximum is None


def test_task_flag_wins() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, 1, 0]})
    assert infer_schema(frame, "label", task="regression").target.task == "regression"
    many = pd.DataFrame({"x": np.arange(50.0), "label": np.arange(50)})
    target = infer_schema(many, "label", task="classification").target
    assert target.task == "classification" and len(target.classes) == 50


def test_target_round_trip_and_old_schemas_are_regressions() -> None:
    stored = DIAMONDS_SCHEMA.to_dict()
    assert stored["target"]["task"] == "regression" and "classes" not in stored["target"]
    old = {**stored, "target": {"name": "price", "exclusive_minimum": 0.0, "maximum": 1e7}}
    assert FeatureSchema.from_dict(old) == DIAMONDS_SCHEMA
    labels = FeatureSchema(DIAMONDS_SCHEMA.features,
                           Target("grade", task="classification", classes=("a", "b")))
    assert FeatureSchema.from_dict(labels.to_dict()) == labels


N = 30


def _table(**columns) -> pd.DataFrame:
    """x and y (N rows, or as long as the given columns) and the given columns."""
    n = max((len(v) for v in columns.values()), default=N)
    base = {"x": np.linspace(1.0, 2.0, n), "y": np.linspace(10.0, 50.0, n)}
    return pd.DataFrame({**base, **columns})


CASES = {
    "unknown target": (_table(), {"target": "price"}, "price", "unknown target"),
    "target with missing values": (
        _table(y=[1.0, None] + [3.0] * (N - 2)), {}, "y", "missing in 1 row"),
    "constant target": (_table(y=[5.0] * N), {}, "y", "constant .* another target"),
    "all-missing target": (_table(y=[None] * N), {}, "y", "no values"),
    "too many classes": (_table(y=[f"c{i}" for i in range(MAX_LEVELS + 1)]), {}, "y",
                         "--task regression"),
    "constant numerical": (_table(c=[7] * N), {}, "c", "constant"),
    "constant categorical": (_table(c=["a"] * N), {}, "c", "constant"),
    "all-missing column": (_table(c=[None] * N), {}, "c", "every row is missing"),
    "all-missing numbers": (_table(c=[np.nan] * N), {}, "c", "every row is missing"),
    "too many levels": (_table(c=[f"id{i}" for i in range(MAX_LEVELS + 1)]), {}, "c",
                        "more than the 1,000 levels"),
    "too many numeric levels": (_table(c=list(range(MAX_LEVELS + 1))),
                                {"categorical": ["c"]}, "c", "declare it numerical"),
    "no feature left": (_table(), {"drop": ["x"]}, "y", "no feature columns left"),
    "categorical and dropped": (_table(c=[1, 2] * 15), {"categorical": ["c"], "drop": ["c"]},
                                "c", "both categorical and dropped"),
    "unknown categorical": (_table(), {"categorical": ["cc"]}, "cc", "--categorical"),
    "unknown drop": (_table(), {"drop": ["cc"]}, "cc", "--drop"),
    "dropped target": (_table(), {"drop": ["y"]}, "y", "cannot be dropped"),
    "categorical target": (_table(), {"categorical": ["y"]}, "y", "--task classification"),
    "reserved name": (_table(prediction=[1.0, 2.0] * 15), {}, "prediction", "reserved"),
    "a date column": (_table(c=list(pd.date_range("2024-01-01", periods=N))), {}, "c",
                      "--drop c"),
    "text target as regression": (_table(y=["a", "b"] * 15), {"task": "regression"}, "y",
                                  "not numeric"),
    "declared numerical text": (_table(c=["a", "b"] * 15),
                                {"columns": {"c": ColumnDeclaration(kind="numerical")}}, "c",
                                "holds 'a'"),
    "data outside declared levels": (
        _table(c=["a", "b", "z"] * 10),
        {"columns": {"c": ColumnDeclaration(levels=("a", "b"))}}, "c", "'z'"),
    "data above declared maximum": (
        _table(), {"columns": {"x": ColumnDeclaration(maximum=1.5)}}, "x", "above the maximum"),
}


@pytest.mark.parametrize("case", CASES)
def test_refusals_name_the_column(case: str) -> None:
    frame, options, column, message = CASES[case]
    options = {"target": "y", **options}
    with pytest.raises(SchemaError, match=message) as info:
        infer_schema(frame, options.pop("target"), **options)
    assert info.value.column == column
    assert column in str(info.value)


def test_schema_file_overrides_inference(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(
        "target: y\n"
        "task: regression\n"
        "drop: [note]\n"
        "columns:\n"
        "  city: {levels: [Tromsø, Oslo, Bergen, Stavanger], description: where}\n"
        "  zone: {kind: categorical}\n"
        "  temp: {exclusive_minimum: -273.15}\n"
        "  weight: {exclusive_minimum: 0, maximum: 100}\n"
        "  y: {maximum: 1000}\n")
    declared = read_schema_file(path)
    assert (declared.target, declared.task, declared.drop) == ("y", "regression", ("note",))
    schema = infer_schema(frame, "y", task=declared.task, drop=declared.drop,
                          columns=declared.columns)
    city = schema.feature("city")
    assert city.levels == ("Tromsø", "Oslo", "Bergen", "Stavanger")  # declared order
    assert city.description == "where"
    assert schema.feature("zone").levels == ("1", "2", "3", "10")
    temp = schema.feature("temp")
    assert (temp.exclusive_minimum, temp.maximum) == (-273.15, 160.0)  # maximum inferred
    weight = schema.feature("weight")
    assert (weight.exclusive_minimum, weight.maximum) == (0.0, 100.0)
    assert schema.target.maximum == 1000.0


def test_schema_file_target_and_drop_with_flags(frame: pd.DataFrame, tmp_path: Path) -> None:
    data, spec = tmp_path / "t.csv", tmp_path / "s.yaml"
    frame.to_csv(data, index=False)
    spec.write_text("target: y\ndrop: [note]\n")
    schema = infer_from_csv(data, schema_file=spec, drop=["member"])  # drops add up
    assert schema.target.name == "y" and schema.names == ["weight", "temp", "city", "zone"]
    flagged = infer_from_csv(data, "temp", schema_file=spec)  # the flag wins
    assert flagged.target.name == "temp" and "y" in flagged.names
    with pytest.raises(SchemaError, match="--target"):
        infer_from_csv(data)


@pytest.mark.parametrize(("text", "message"), [
    ("columns: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("targets: y\n", "unknown key 'targets'"),
    ("task: ranking\n", "task must be one of"),
    ("columns:\n  c: {kind: text}\n", "column c: kind must be"),
    ("columns:\n  c: {levels: []}\n", "column c: levels must be a non-empty list"),
    ("columns:\n  c: {levels: [a, a]}\n", "column c: level 'a' is listed twice"),
    ("columns:\n  c: {levels: [a], maximum: 3}\n", "column c: a categorical column has no"),
    ("columns:\n  c: {maximum: big}\n", "column c: maximum must be a finite number"),
    ("columns:\n  c: {exclusive_minimum: 5, maximum: 1}\n", "column c: exclusive_minimum"),
    ("columns:\n  c: {colour: red}\n", "column c: unknown key 'colour'"),
])
def test_unparseable_schema_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SchemaError, match=message) as info:
        read_schema_file(path)
    assert str(path) in str(info.value)


def test_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema file"):
        read_schema_file(tmp_path / "nowhere.yaml")


def test_schema_file_naming_an_unknown_column(frame: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="schema file names column 'town'") as info:
        infer_schema(frame, "y", columns={"town": ColumnDeclaration(kind="categorical")})
    assert info.value.column == "town"


def test_describe_says_kind_and_bounds_or_levels(frame: pd.DataFrame) -> None:
    lines = describe(infer_schema(frame, "y", task="regression", drop=["note"]))
    assert lines[0].split() == ["y", "regression", "target", "(0,", "346]"]
    assert lines[1].split() == ["weight", "numerical", "(0,", "29]"]
    assert lines[3].split() == ["city", "categorical", "3", "levels:", "Bergen,", "Oslo,",
                                "Tromsø"]


def test_training_without_data_needs_the_schemas_columns(frame: pd.DataFrame,
                                                         tmp_path: Path) -> None:
    schema = infer_schema(frame, "y", task="regression", drop=["note"])
    with pytest.raises(TrainingError, match=r"column\(s\) weight, temp, .*\(--data CSV\)"):
        train(tmp_path / "m", schema=schema)
