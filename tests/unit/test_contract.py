"""The pods' window counters as one contract: what ``tally_metrics`` encodes,
``parse_counters`` decodes (a round trip), under the names in ``driftkeeper.contract``, and
the contract's text reader reads the pages as prometheus-client's own parser does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftkeeper.contract import names
from driftkeeper.contract.text import read_samples
from driftkeeper.model.store import ModelStore
from driftkeeper.serving.tally import Tally
from driftkeeper_operator.counters import (
    Counters,
    class_prediction_windows_of,
    parse_counters,
    residual_window_of,
)
from exposition import (
    MULTICLASS,
    as_classifier,
    as_multiclass,
    classifier_residuals,
    tally_exposition,
)


@pytest.fixture(scope="module")
def profile(trained_model_dir: Path):
    return ModelStore(trained_model_dir).load(with_estimator=False).profile


def _counted(profile, encoded: np.ndarray, residuals: np.ndarray, seed: int) -> Tally:
    """A tally with every kind of counter: inputs (some beyond the reference range, some
    unseen levels), predictions, loss estimates, residuals and segments (and a multiclass
    model's class sums)."""
    rng = np.random.default_rng(seed)
    X = encoded[rng.choice(len(encoded), len(residuals), replace=False)].copy()
    X[:, 0] *= 1.4
    X[:7, 1] = 99  # categorical codes the schema does not know
    predictions = 4000.0 * X[:, 0] ** 1.7
    tally = Tally.empty(profile, "v3", 1_700_000_123.5)
    tally.add_inputs(profile, X)
    tally.add_predictions(profile, predictions,
                          rng.dirichlet(np.ones(profile.n_classes), len(X))
                          if profile.n_classes >= 3 else None)
    tally.add_estimates(rng.gamma(2.0, 1e5, len(X)))
    if profile.n_classes >= 3:
        k = profile.n_classes
        tally.add_residuals(profile, residuals, rng.exponential(0.5, len(X)),
                            rng.random(len(X)) < 0.7, rng.integers(0, k, len(X)),
                            rng.dirichlet(np.ones(k), len(X)))
    else:
        tally.add_residuals(profile, residuals)
    tally.add_segments(profile, X, residuals, predictions)
    tally.dropped_rows = 5
    return tally


def _decoded(tally: Tally, directory: Path, labels: float) -> Counters:
    page = tally_exposition(tally, directory)
    page += f"# TYPE {names.FEEDBACK.sample} counter\n{names.FEEDBACK.sample} {labels}\n"
    return parse_counters(page)


@pytest.mark.parametrize("kind", ["regression", "classifier", "multiclass"])
def test_what_the_tally_encodes_the_operator_decodes(tmp_path, profile, encoded,
                                                     kind) -> None:
    if kind == "classifier":
        profile = as_classifier(profile)
        residuals = classifier_residuals(600, 3)
    elif kind == "multiclass":
        profile = as_multiclass(profile)
        residuals = np.random.default_rng(2).uniform(0.0, 0.9, 600)
    else:
        residuals = np.random.default_rng(2).standard_t(3, 600) * 400
    tally = _counted(profile, encoded, residuals, seed=4)
    got = _decoded(tally, tmp_path, labels=611)

    assert (got.version, got.started, got.labels) == ("v3", 1_700_000_123.5, 611)
    assert (got.data_rows, got.concept_rows) == (600, 600)
    assert (got.prediction_rows, got.estimate_rows) == (600, 600)
    assert got.estimate_sum == pytest.approx(tally.estimate_sum)
    for name, feature in tally.features.items():
        np.testing.assert_array_equal(got.features[name], feature.counts)
        if feature.numeric:
            assert got.outside[name] == pytest.approx(
                (feature.under_distance, feature.over_distance))
    cut = profile.schema.features[1].name
    assert got.unseen == {cut: 7}
    np.testing.assert_array_equal(got.residual_bins, tally.residual_counts)
    np.testing.assert_array_equal(got.prediction_bins, tally.prediction_counts)
    assert (got.residual_positive, got.residual_negative, got.residual_squares) == \
        pytest.approx((tally.residual_positive, tally.residual_negative,
                       tally.residual_squares))
    assert tally.segments is not None
    for name, sums in tally.segments.features.items():
        for key in ("n", "positive", "negative", "squares", "predictions"):
            np.testing.assert_allclose(got.segments[(name, key)], getattr(sums, key))
    if kind == "regression":
        assert got.log_loss_sum is None and got.correct is None
    else:
        assert got.log_loss_sum == pytest.approx(tally.log_loss_sum)
        assert got.correct == tally.correct and got.correct is not None
    if kind == "multiclass":
        assert tally.class_rows is not None and tally.class_probabilities is not None
        assert tally.class_rows.sum() == 600
        assert got.classes is not None and set(got.classes) == set(MULTICLASS)
        for i, c in enumerate(MULTICLASS):
            assert got.classes[c] == pytest.approx(
                (tally.class_rows[i], tally.class_probabilities[i]))
        # The operator's window has them in the profile's class order.
        window = residual_window_of(profile, got)
        np.testing.assert_allclose(window.class_rows, tally.class_rows)
        np.testing.assert_allclose(window.class_probabilities, tally.class_probabilities)
        # Each class's probability window, as the tally binned it.
        assert tally.class_prediction_counts is not None
        by_class = class_prediction_windows_of(profile, got)
        assert by_class is not None and set(by_class) == set(MULTICLASS)
        for c in MULTICLASS:
            assert tally.class_prediction_counts[c].sum() == 600
            np.testing.assert_array_equal(by_class[c].counts, tally.class_prediction_counts[c])
    else:
        assert got.classes is None and got.class_prediction_bins == {}


def test_every_family_of_the_contract_is_on_the_page(tmp_path, profile, encoded) -> None:
    """A multiclass model's page has every family (a binary one all but the classes')."""
    classifier = as_multiclass(profile)
    tally = _counted(classifier, encoded, np.random.default_rng(1).uniform(0, 0.9, 300),
                     seed=5)
    page = tally_exposition(tally, tmp_path)
    exposed = {s.name for f in text_string_to_metric_families(page) for s in f.samples}
    # The feedback counter is the workers' own (serving/metrics.py), not the tally's.
    wanted = {f.sample for f in names.WINDOW_FAMILIES} - {names.FEEDBACK.sample}
    assert wanted <= exposed, wanted - exposed


def test_the_reader_reads_what_prometheus_client_reads(tmp_path, profile, encoded) -> None:
    """On a real page, with a feature whose name needs every escape the format has."""
    tally = _counted(profile, encoded, np.random.default_rng(6).normal(0, 300, 400), seed=7)
    odd = 'a "quoted", {braced} back\\slash\nnewline'
    first = next(iter(tally.features))
    tally = replace(tally, features={odd if n == first else n: f
                                     for n, f in tally.features.items()})
    page = tally_exposition(tally, tmp_path)
    expected = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(page)
                for s in f.samples]
    wanted = {name for name, _, _ in expected}
    got = [tuple(s) for s in read_samples(page, wanted)]
    assert got == expected
    assert any(labels.get(names.FEATURE) == odd for _, labels, _ in got)
    # Only the families asked for, in the page's order.
    rows = list(read_samples(page, {names.WINDOW_ROWS.sample}))
    assert [s.labels[names.KIND] for s in rows] == [names.DATA, names.CONCEPT,
                                                    names.PERFORMANCE, names.PREDICTION]


@pytest.mark.parametrize("line", ['driftkeeper_window_rows_total{kind="data"}',
                                  'driftkeeper_window_rows_total{kind="data"} many'])
def test_an_unreadable_line_is_an_error_that_names_it(line: str) -> None:
    with pytest.raises(ValueError, match="line 2 of the exposition"):
        list(read_samples(f"# TYPE x counter\n{line}\n", {names.WINDOW_ROWS.sample}))


def test_ring_rows_read_back_by_name_what_was_packed() -> None:
    """The layouts /predict and /feedback write with, read back column by column as the
    evaluator and the tally read them."""
    from driftkeeper.contract.rings import FeedbackRows, InputRows

    rng = np.random.default_rng(8)
    X, stamps = rng.normal(size=(5, 6)), 1e9 + np.arange(5.0)
    predictions, residuals = rng.normal(size=5), rng.normal(size=5)
    served = InputRows(6)
    rows = served.pack(stamps, X, 7, predictions)
    assert rows.shape == (5, served.width) and served.empty().shape == (0, served.width)
    np.testing.assert_array_equal(served.stamps(rows), stamps)
    np.testing.assert_array_equal(served.features(rows), X)
    np.testing.assert_array_equal(served.versions(rows), np.full(5, 7.0))
    np.testing.assert_array_equal(served.predictions(rows), predictions)
    labels = FeedbackRows(6)
    outcomes, classes = rng.uniform(size=5), rng.integers(0, 3, size=5).astype(float)
    rows = labels.pack(stamps, 7, residuals, predictions, X, outcomes, classes)
    assert rows.shape == (5, labels.width)
    np.testing.assert_array_equal(labels.outcomes(rows), outcomes)
    np.testing.assert_array_equal(labels.labels(rows), classes)
    unknown = labels.pack(stamps, 7, residuals, predictions, X)  # a regression's: NaN
    assert np.isnan(labels.outcomes(unknown)).all() and np.isnan(labels.labels(unknown)).all()
    np.testing.assert_array_equal(labels.stamps(rows), stamps)
    np.testing.assert_array_equal(labels.versions(rows), np.full(5, 7.0))
    np.testing.assert_array_equal(labels.residuals(rows), residuals)
    np.testing.assert_array_equal(labels.predictions(rows), predictions)
    np.testing.assert_array_equal(labels.features(rows), X)
    assert (served.prefix, labels.prefix) == ("inputs", "feedback")


def test_class_sums_difference_and_add_up_only_when_every_reading_has_them() -> None:
    from driftkeeper_operator.counters import total

    older = Counters("v2", 10.0, classes={"red": (5.0, 4.0), "blue": (3.0, 4.5)},
                     class_prediction_bins={"red": np.array([1.0, 2.0])})
    newer = Counters("v2", 10.0, classes={"red": (9.0, 7.5), "blue": (4.0, 5.0)},
                     class_prediction_bins={"red": np.array([3.0, 2.0])})
    assert newer.minus(older).classes == {"red": (4.0, 3.5), "blue": (1.0, 0.5)}
    np.testing.assert_array_equal(newer.minus(older).class_prediction_bins["red"], [2.0, 0.0])
    np.testing.assert_array_equal(
        total([newer, newer]).class_prediction_bins["red"], [6.0, 4.0])
    restarted = Counters("v2", 20.0, classes={"red": (1.0, 0.5), "blue": (0.0, 0.25)})
    assert restarted.minus(newer).classes == restarted.classes  # a reset: all of it
    both = total([newer.minus(older), restarted])
    assert both.classes == {"red": (5.0, 4.0), "blue": (1.0, 0.75)}
    # A replica without them (an older pod) leaves the fleet's calibration unknown.
    assert total([restarted, Counters("v2", 30.0)]).classes is None
