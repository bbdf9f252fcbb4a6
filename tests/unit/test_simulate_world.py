"""The simulator on any table: the world's columns read from a schema and a table, each
scenario doing what its summary says on a table that is not diamonds, the overrides, and
the diamonds world producing exactly the batches it always did."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from driftkeeper.data import canonicalize
from driftkeeper.errors import SimulationError
from driftkeeper.inference import infer_schema
from driftkeeper.schema import DIAMONDS_SCHEMA, FeatureSchema
from driftkeeper.simulate.catalog import CATALOG
from driftkeeper.simulate.scenarios import SCENARIOS, Batch
from driftkeeper.simulate.world import Overrides, Segment, World

ROWS = 4000


@pytest.fixture(scope="module")
def diabetes() -> tuple[FeatureSchema, pd.DataFrame]:
    """sklearn's diabetes table: ten numerical features, a positive target."""
    frame = load_diabetes(as_frame=True).frame
    schema = infer_schema(frame, "target")
    return schema, canonicalize(frame, schema)


@pytest.fixture(scope="module")
def diabetes_text_sex() -> tuple[FeatureSchema, pd.DataFrame]:
    """The same with `sex` as text levels: one categorical feature."""
    frame = load_diabetes(as_frame=True).frame
    frame["sex"] = np.where(frame["sex"] > 0, "male", "female")
    schema = infer_schema(frame, "target")
    return schema, canonicalize(frame, schema)


def _world(pair: tuple[FeatureSchema, pd.DataFrame]) -> World:
    return World.infer(*pair)


def _batch(name: str, world: World, t: float, n: int = ROWS, seed: int = 0) -> Batch:
    return SCENARIOS[name].generate(np.random.default_rng(seed), world, t, n)


# -- the diamonds world is the one the simulator always played ---------------------------

PINNED = {  # sha256 prefixes of rows + labels, computed on the diamonds-only code (7cfadbd)
    "none": "5d9c75197edff78d", "lab": "a9d52625ea30ac48",
    "covariate-gradual": "14ee7f7999df1bf1", "covariate-sudden": "503ec08695d95a28",
    "category-mix": "90b36d6a7e99b24b", "concept": "147767befaadfd6e",
    "mixed": "8b0a91f8d404f913", "recovery": "9661e6232d9df01b",
}


def test_only_a_classifiers_scenario_is_not_pinned(diamonds: pd.DataFrame) -> None:
    """Every scenario the diamonds world can play is pinned; class-prior needs classes."""
    assert set(SCENARIOS) - set(PINNED) == {"class-prior"}
    with pytest.raises(SimulationError, match="class-prior needs a classifier's classes"):
        _batch("class-prior", World.for_diamonds(diamonds), 1.0, n=5)


@pytest.mark.parametrize("name", list(PINNED))
def test_diamonds_batches_are_bit_identical_to_the_diamonds_only_simulator(
        diamonds: pd.DataFrame, name: str) -> None:
    world = World.for_diamonds(diamonds)
    rng = np.random.default_rng(7)
    digest = hashlib.sha256()
    for t, n in ((0.0, 5), (0.2, 1), (0.5, 40), (0.7, 3), (1.0, 20)):  # every phase
        batch = SCENARIOS[name].generate(rng, world, t, n)
        digest.update(pd.util.hash_pandas_object(batch.rows, index=False).to_numpy().tobytes())
        digest.update(np.asarray(batch.labels, dtype=np.float64).tobytes())
    assert digest.hexdigest()[:16] == PINNED[name]


def test_the_diamonds_world_is_the_labs(diamonds: pd.DataFrame) -> None:
    world = World.for_diamonds(diamonds)
    assert (world.target, world.tilt_feature, world.mix_feature, world.mix_level) == (
        "price", "carat", "cut", "Ideal")
    assert world.concept == Segment("color", ("D", "E", "F"))
    assert (world.concept_factor, world.concept_offset) == (1.25, 0.0)
    assert world.noise == (("carat", 0.98, 1.02), ("depth", 0.99, 1.01),
                           ("table", 0.99, 1.01))
    assert World.for_schema(DIAMONDS_SCHEMA, diamonds) == world
    assert SCENARIOS["mixed"].drifted_features(world) == ("carat",)
    assert SCENARIOS["category-mix"].drifted_features(world) == ("cut",)


def test_inferred_diamonds_world_agrees_where_the_rules_say_so(diamonds: pd.DataFrame) -> None:
    world = World.infer(DIAMONDS_SCHEMA, diamonds)
    lab = World.for_diamonds(diamonds)
    # carat is what the price depends on most; cut is the first categorical, Ideal its
    # most frequent level; the price is positive, so the concept is the same factor.
    assert (world.tilt_feature, world.mix_feature, world.mix_level) == (
        lab.tilt_feature, lab.mix_feature, lab.mix_level)
    assert (world.concept_factor, world.concept_offset) == (1.25, 0.0)
    # The segment: colour (not the mix feature), its most frequent levels G then E.
    assert world.concept == Segment("color", ("G", "E"))
    share = world.concept.mask(diamonds).mean()
    assert 0.25 <= share <= 0.5


# -- inference on a table that is not diamonds ---------------------------------------------


def test_inferred_world_on_an_all_numerical_table(diabetes) -> None:
    schema, table = diabetes
    world = _world(diabetes)
    spearman = table.corr(method="spearman")["target"].drop("target").abs()
    assert world.tilt_feature == spearman.idxmax() == "s5"
    assert world.mix_feature is None and world.mix_level is None
    # No categorical: the upper quartile of the first numerical feature that is not the tilt.
    assert world.concept is not None and world.concept.feature == "age"
    assert world.concept.above == pytest.approx(table["age"].quantile(0.75))
    assert 0.2 <= world.concept.mask(table).mean() <= 0.3
    assert (world.concept_factor, world.concept_offset) == (1.25, 0.0)  # target > 0
    assert {name for name, _, _ in world.noise} == set(schema.names)


def test_inferred_world_with_a_categorical(diabetes_text_sex) -> None:
    world = _world(diabetes_text_sex)
    assert (world.mix_feature, world.mix_level) == ("sex", "female")  # 235 of 442 rows
    # Female (53 %) would pass half the rows: the segment is the next level, male (47 %).
    assert world.concept == Segment("sex", ("male",))


def test_a_target_that_is_not_positive_shifts_by_a_quarter_sd(diabetes) -> None:
    schema, table = diabetes
    centred = table.assign(target=table["target"] - table["target"].mean())
    world = World.infer(schema, centred)
    assert world.concept_factor == 1.0
    assert world.concept_offset == pytest.approx(0.25 * centred["target"].std(ddof=0))


def test_a_binary_classifier_gets_its_classes_and_flipped_labels(diabetes) -> None:
    """Labels are class indices inside the world and classes on the wire; the concept flips
    30 % of the labels in its segment, none outside, and the lab's noise leaves labels be."""
    _, table = diabetes
    frame = pd.DataFrame(table).assign(
        target=np.where(table["target"] > 140, "high", "low"))
    schema = infer_schema(frame, "target")
    world = World.infer(schema, canonicalize(frame, schema))
    assert world.classes == ("high", "low") and world.concept is not None
    assert world.describe_shift().startswith("target 30% flipped where ")
    assert set(world.table["target"]) == {0.0, 1.0}
    assert (world.label(0.0), world.label(1.0)) == ("high", "low")
    before = _batch("concept", world, 0.0, n=20000, seed=4)
    after = _batch("concept", world, 1.0, n=20000, seed=4)
    inside = world.concept.mask(after.rows).astype(bool)
    assert before.labels.tolist() == world.table["target"].iloc[
        np.random.default_rng(4).choice(len(world.table), 20000)].tolist()
    flipped = after.labels != _batch("none", world, 1.0, n=20000, seed=4).labels
    assert not flipped[~inside].any()
    assert flipped[inside].mean() == pytest.approx(0.3, abs=0.02)
    noisy = _batch("lab", world, 1.0, n=500, seed=5)
    assert set(noisy.labels) <= {0.0, 1.0}


@pytest.fixture(scope="module")
def wine() -> World:
    data = load_wine(as_frame=True)
    frame = data.frame.assign(target=np.asarray(data.target_names)[data.target])
    schema = infer_schema(frame, "target")
    return World.infer(schema, canonicalize(frame, schema))


def test_a_multiclass_world_relabels_to_the_next_class(wine: World) -> None:
    """K = 3: the concept moves 30 % of the segment's labels to the next class (modulo K),
    none outside; the tilt is the feature the classes separate best."""
    assert wine.classes == ("class_0", "class_1", "class_2") and wine.concept is not None
    assert wine.describe_shift().startswith("target 30% relabelled as the next class where ")
    assert wine.tilt_feature in ("flavanoids", "proline", "color_intensity",
                                 "od280/od315_of_diluted_wines", "alcohol")
    after = _batch("concept", wine, 1.0, n=20000, seed=4)
    plain = _batch("none", wine, 1.0, n=20000, seed=4).labels
    inside = wine.concept.mask(after.rows).astype(bool)
    moved = after.labels != plain
    assert not moved[~inside].any()
    assert moved[inside].mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(after.labels[moved], (plain[moved] + 1) % 3)


def test_class_prior_makes_the_most_frequent_class_rarer(wine: World) -> None:
    """class_1 (71 of 178 wines, 40 %) arrives at 0.4 times its rate: ~21 %."""
    assert wine.prior_label == "class_1"
    before = _batch("class-prior", wine, 0.0, seed=6)
    after = _batch("class-prior", wine, 1.0, seed=6)
    assert np.mean(before.labels == 1) == pytest.approx(71 / 178, abs=0.03)
    expected = 0.4 * 71 / (0.4 * 71 + 107)
    assert np.mean(after.labels == 1) == pytest.approx(expected, abs=0.03)
    assert after.phase == "fewer target = class_1"


# -- every scenario on diabetes does what it says, and only that ---------------------------


def test_none_resamples_the_table(diabetes) -> None:
    world = _world(diabetes)
    batch = _batch("none", world, 1.0)
    assert list(batch.rows.columns) == world.features
    assert batch.labels.mean() == pytest.approx(world.table["target"].mean(), rel=0.05)


def test_covariate_shifts_move_the_tilt_feature_up(diabetes) -> None:
    world = _world(diabetes)
    sd = world.table["s5"].std()
    before = _batch("covariate-sudden", world, 0.2).rows["s5"].mean()
    after = _batch("covariate-sudden", world, 1.0).rows["s5"].mean()
    assert abs(before - world.table["s5"].mean()) < 0.1 * sd
    assert after - before > 0.5 * sd
    gradual = [_batch("covariate-gradual", world, t).rows["s5"].mean() for t in (0, 0.5, 1)]
    assert gradual[0] < gradual[1] < gradual[2]
    # Labels stay real: the rows are table rows, re-weighted, so the target follows s5.
    assert _batch("covariate-sudden", world, 1.0).labels.mean() > world.table["target"].mean()
    assert SCENARIOS["covariate-sudden"].drifted_features(world) == ("s5",)


def test_category_mix_makes_the_level_rarer(diabetes_text_sex) -> None:
    world = _world(diabetes_text_sex)
    share = world.table["sex"].eq("female").mean()
    before = _batch("category-mix", world, 0.2).rows["sex"].eq("female").mean()
    after = _batch("category-mix", world, 1.0).rows["sex"].eq("female").mean()
    expected = 0.4 * share / (0.4 * share + 1 - share)  # weight 0.4: 53 % -> 31 %
    assert before == pytest.approx(share, abs=0.03)
    assert after == pytest.approx(expected, abs=0.03)
    assert SCENARIOS["category-mix"].drifted_features(world) == ("sex",)


def test_category_mix_without_a_categorical_names_the_scenario(diabetes) -> None:
    with pytest.raises(SimulationError, match="scenario category-mix needs a categorical"):
        _batch("category-mix", _world(diabetes), 1.0)


@pytest.mark.parametrize("pair", ["diabetes", "diabetes_text_sex"])
def test_concept_shifts_the_target_in_the_segment_only(request, pair: str) -> None:
    world = _world(request.getfixturevalue(pair))
    assert world.concept is not None
    plain = _batch("none", world, 1.0, seed=3)  # the same rows: both draw them alike
    before_onset = _batch("concept", world, 0.2, seed=3)
    assert np.array_equal(before_onset.labels, plain.labels)
    shifted = _batch("concept", world, 1.0, seed=3)
    assert shifted.rows.equals(plain.rows)
    inside = world.concept.mask(shifted.rows)
    assert 0.1 < inside.mean() < 0.6
    np.testing.assert_array_equal(shifted.labels[~inside], plain.labels[~inside])
    np.testing.assert_allclose(shifted.labels[inside], plain.labels[inside] * 1.25)
    assert SCENARIOS["concept"].drifted_features(world) == ()
    assert "target x1.25 where" in shifted.phase


def test_mixed_and_recovery_tilt_and_shift_then_return(diabetes) -> None:
    world = _world(diabetes)
    mean = world.table["s5"].mean()
    drifted = _batch("recovery", world, 0.5, seed=5)
    recovered = _batch("recovery", world, 0.9, seed=5)
    plain = _batch("none", world, 0.9, seed=5)
    assert drifted.rows["s5"].mean() - mean > 0.5 * world.table["s5"].std()
    assert recovered.rows.equals(plain.rows) and np.array_equal(recovered.labels,
                                                               plain.labels)
    mixed = _batch("mixed", world, 1.0, seed=5)
    assert mixed.rows.equals(_batch("covariate-sudden", world, 1.0, seed=5).rows)
    assert (recovered.phase, drifted.phase) == ("recovered", "drifted")


def test_lab_noise_is_small_and_one_draw_per_request(diabetes) -> None:
    world = _world(diabetes)
    plain = _batch("none", world, 1.0, n=50, seed=9)
    noisy = _batch("lab", world, 1.0, n=50, seed=9)
    for name in ("bmi", "s5"):
        ratio = noisy.rows[name] / plain.rows[name]
        assert ratio.nunique() == 1 and 0.99 <= ratio.iloc[0] <= 1.01
    assert np.abs(noisy.labels / plain.labels - 1).max() < 0.05


def test_summaries_name_the_worlds_columns(diabetes_text_sex) -> None:
    words = _world(diabetes_text_sex).words()
    text = CATALOG["mixed"].describe(dict(words))
    assert "<" not in text and "s5" in text and "target x1.25 where sex in male" in text
    assert "sex = female" in CATALOG["category-mix"].describe(dict(words))


# -- overrides ---------------------------------------------------------------------------


def test_overrides_choose_the_columns(diabetes_text_sex) -> None:
    schema, table = diabetes_text_sex
    world = World.for_schema(schema, table, Overrides(tilt="bmi", mix="sex=male",
                                                      concept="bmi>0.05"))
    assert (world.tilt_feature, world.mix_feature, world.mix_level) == ("bmi", "sex", "male")
    assert world.concept == Segment("bmi", above=0.05)
    levels = World.for_schema(schema, table, Overrides(concept="sex=female, male"))
    assert levels.concept == Segment("sex", ("female", "male"))


@pytest.mark.parametrize(("overrides", "message"), [
    (Overrides(tilt="weight"), r"--tilt weight: not a feature of the served model; it needs "
                               r"one of the numerical features: age, bmi"),
    (Overrides(tilt="sex"), "--tilt sex: a categorical feature"),
    (Overrides(mix="bmi=1"), "--mix bmi: a numerical feature; it needs one of the "
                             "categorical features: sex"),
    (Overrides(mix="sex"), "expected FEATURE=LEVEL"),
    (Overrides(mix="sex=other"), "--mix: sex has no level 'other'; its levels: female, male"),
    (Overrides(concept="sex=other"), "--concept: sex has no level 'other'"),
    (Overrides(concept="sex>1"), "--concept sex: a categorical feature"),
    (Overrides(concept="bmi>heavy"), "'heavy' is not a number"),
    (Overrides(concept="bmi>10"), r"no row of the table is in bmi > 10"),
    (Overrides(concept="bmi"), "expected FEATURE=LEVEL"),
])
def test_bad_overrides_say_what_would_do(diabetes_text_sex, overrides: Overrides,
                                         message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        World.for_schema(*diabetes_text_sex, overrides)


def test_overrides_apply_to_the_diamonds_world_too(diamonds: pd.DataFrame) -> None:
    world = World.for_schema(DIAMONDS_SCHEMA, diamonds, Overrides(concept="clarity=IF,VVS1"))
    assert world.concept == Segment("clarity", ("IF", "VVS1"))
    assert world.tilt_feature == "carat" and world.noise[0] == ("carat", 0.98, 1.02)


def test_shift_after_moves_the_onset_and_plays_the_rest_of_the_scenario() -> None:
    from driftkeeper.simulate.catalog import ONSET
    from driftkeeper.simulate.runner import SimulationConfig

    default = SimulationConfig(url="u", scenario="concept", rate=10, duration=100)
    early = SimulationConfig(url="u", scenario="concept", rate=10, duration=100,
                             shift_after=5)
    total = default.total_requests()
    assert default.progress(0, total) == 0 and default.progress(total - 1, total) == 1
    onset = [i for i in range(total) if early.progress(i, total) >= ONSET]
    assert onset[0] == 50  # 5 s at 10 requests/s, instead of 30% of 1,000 requests
    assert early.progress(total - 1, total) == 1
    progress = [early.progress(i, total) for i in range(total)]
    assert progress == sorted(progress)  # time still runs forward
