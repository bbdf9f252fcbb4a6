"""Where the fleet's counters come from: each replica's /metrics, or a Prometheus.

Both give a :class:`FleetView`: the serving version, the summed data and labelled windows,
and the fleet's running count of labels, so the evaluation does not care which was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import requests

from driftkeeper.contract import names
from driftkeeper.policy import DriftPolicy
from driftkeeper.policy.labels import LabelReading

from .counters import (
    Counters,
    bins_array,
    parse_counters,
    total,
)
from .fleet import FleetHistory, Reading, version_order
from .kube import Endpoint


@dataclass(frozen=True)
class FleetView:
    """What the fleet's counters say at one evaluation."""

    version: str | None  # the version most replicas serve
    replicas: int  # replicas whose counters were read
    data: Counters  # the data window, summed over replicas
    concept: Counters  # the labelled window, summed over replicas
    # Each replica's running count of labelled rows, with its counters' identity, to be
    # differenced per replica (policy/labels.py); replicas that did not answer are absent.
    labels: dict[str, LabelReading] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # replicas that could not be read


def label_reading(counters: Counters) -> LabelReading:
    """A replica's labelled rows as its tally counted them (``window_rows_total{kind=
    "concept"}``), identified like every window counter by version and start: they restart
    on a promotion and on a pod restart without persistent state, and a restart is then
    seen rather than read as fewer labels."""
    return LabelReading(counters.concept_rows, f"{counters.version}@{counters.started!r}",
                        counters.started)


class ScrapeSource:
    """Reads every ready replica's /metrics and differences successive readings."""

    def __init__(self, session: requests.Session, timeout: float, horizon: float) -> None:
        self.session = session
        self.timeout = timeout
        self.history = FleetHistory(horizon)

    def observe(self, endpoints: list[Endpoint], policy: DriftPolicy, now: float) -> FleetView:
        self.history.horizon = max(policy.data_window.max_age, policy.concept_window.max_age)
        replicas: dict[str, Counters] = {}
        errors = []
        for endpoint in endpoints:
            try:
                resp = self.session.get(endpoint.url + "/metrics", timeout=self.timeout)
                resp.raise_for_status()
                replicas[endpoint.name] = parse_counters(resp.text)
            except (requests.RequestException, ValueError) as exc:
                errors.append(f"{endpoint.name}: {exc}")
        self.history.add(Reading(now, replicas))
        version = self.history.serving_version()
        labels = {r: label_reading(c) for r, c in replicas.items() if c.version is not None}
        if version is None:
            empty = total([])
            return FleetView(None, len(replicas), empty, empty, labels, errors)
        data = self.history.window("data", version, policy.data_window.size,
                                   policy.data_window.max_age)
        concept = self.history.window("concept", version, policy.concept_window.size,
                                      policy.concept_window.max_age)
        return FleetView(version, data.replicas, data.counts, concept.counts, labels, errors)


class PrometheusError(Exception):
    """The Prometheus query API failed or answered something unusable."""


class PrometheusSource:
    """Sums every replica's counters with PromQL, over a range that holds about one window
    of rows. Each series' window is its value now minus its value one range ago (exact:
    no extrapolation, unlike ``increase()``), or its whole value when it started or was
    reset within the range (a new replica, a restart, a promotion)."""

    MIN_RANGE = 30.0  # seconds: a few scrape intervals, or increase() has nothing to go on

    def __init__(self, session: requests.Session, url: str, selector: str,
                 timeout: float) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.selector = selector
        self.timeout = timeout

    def query(self, promql: str, now: float) -> list[dict[str, Any]]:
        try:
            resp = self.session.get(f"{self.url}/api/v1/query",
                                    params={"query": promql, "time": f"{now:.3f}"},
                                    timeout=self.timeout)
            body = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise PrometheusError(f"querying {self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url} refused {promql!r}: {body.get('error')}")
        return body["data"]["result"]

    def _sel(self, extra: str = "") -> str:
        parts = [p for p in (self.selector, extra) if p]
        return "{" + ",".join(parts) + "}"

    def _scalar(self, promql: str, now: float) -> float:
        result = self.query(promql, now)
        value = float(result[0]["value"][1]) if result else 0.0
        return value if math.isfinite(value) else 0.0

    def observe(self, endpoints: list[Endpoint], policy: DriftPolicy, now: float) -> FleetView:
        del endpoints  # Prometheus knows the replicas
        # One kind="data" series per replica (each also exports concept and prediction).
        data_series = self._sel('kind="data"')
        versions = self.query(f"count by ({names.VERSION}) "
                              f"({names.WINDOW_ROWS.sample}{data_series})", now)
        labels = self._labels(now)
        if not versions:
            empty = total([])
            return FleetView(None, 0, empty, empty, labels)
        counted = {r["metric"]["model_version"]: float(r["value"][1]) for r in versions}
        version = max(counted, key=lambda v: (counted[v], version_order(v)))
        v = f'model_version="{version}"'
        replicas = int(counted[version])
        data_range = self._range("data", v, policy.data_window.size,
                                 policy.data_window.max_age, now)
        concept_range = self._range("concept", v, policy.concept_window.size,
                                    policy.concept_window.max_age, now)
        return FleetView(version, replicas, self._data(v, version, data_range, now),
                         self._concept(v, version, concept_range, now), labels)

    def _labels(self, now: float) -> dict[str, LabelReading]:
        """Each replica's labelled-row counter and its start, as :func:`label_reading`
        makes them from a scrape (a replica is its ``pod`` label, else its ``instance``)."""
        def replica(metric: dict[str, str]) -> str:
            return metric.get("pod") or metric.get("instance") or repr(sorted(metric.items()))

        starts = {(replica(r["metric"]), r["metric"].get("model_version")): float(r["value"][1])
                  for r in self.query(f"{names.COUNTERS_START.sample}{self._sel()}", now)}
        concept = self._sel('kind="concept"')
        readings: dict[str, LabelReading] = {}
        for r in self.query(f"{names.WINDOW_ROWS.sample}{concept}", now):
            name, version = replica(r["metric"]), r["metric"].get("model_version")
            started = starts.get((name, version))
            before = readings.get(name)
            if before is not None and (before.started or 0.0) > (started or 0.0):
                continue  # a replica exports one version's counters; keep the newest
            readings[name] = LabelReading(float(r["value"][1]), f"{version}@{started!r}",
                                          started)
        return readings

    def _range(self, kind: str, v: str, size: int, max_age: float, now: float) -> str:
        """A PromQL range holding about ``size`` rows at the current rate, within maxAge."""
        matchers = self._sel(f'{v},kind="{kind}"')
        rate = self._scalar(f"sum(rate({names.WINDOW_ROWS.sample}{matchers}[1m]))", now)
        seconds = max_age if rate <= 0 else min(max(size / rate, self.MIN_RANGE), max_age)
        return f"{max(math.ceil(seconds), 1)}s"

    def _by(self, metric: str, labels: str, v: str, window: str, now: float
            ) -> list[tuple[dict[str, str], float]]:
        series = f"{metric}{self._sel(v)}"
        delta = f"(({series} - {series} offset {window}) >= 0 or {series})"
        result = self.query(f"sum by ({labels}) ({delta})", now)
        return [(r["metric"], max(float(r["value"][1]), 0.0)) for r in result]

    def _data(self, v: str, version: str, window: str, now: float) -> Counters:
        features: dict[str, dict[int, float]] = {}
        unseen: dict[str, float] = {}
        for labels, value in self._by(names.FEATURE_BIN.sample, "feature, bin", v,
                                      window, now):
            b = int(labels["bin"])
            if b < 0:
                unseen[labels["feature"]] = value
            else:
                features.setdefault(labels["feature"], {})[b] = value
        outside: dict[str, list[float]] = {}
        for labels, value in self._by(names.FEATURE_OUTSIDE.sample,
                                      "feature, side", v, window, now):
            sides = outside.setdefault(labels["feature"], [0.0, 0.0])
            sides[0 if labels["side"] == "under" else 1] = value
        rows = sum(self._by_kind(v, "data", window, now))
        predictions = {int(labels["bin"]): value for labels, value in self._by(
            names.PREDICTION_BIN.sample, "bin", v, window, now)}
        estimates = sum(value for _, value in self._by(
            names.ESTIMATED_SQUARED_ERROR.sample, "model_version", v, window, now))
        by_class: dict[str, dict[int, float]] = {}  # a multiclass model's, by class
        for labels, value in self._by(names.CLASS_PREDICTION_BIN.sample, "class, bin", v,
                                      window, now):
            by_class.setdefault(labels[names.CLASS], {})[int(labels[names.BIN])] = value
        return Counters(version, None, {f: bins_array(b) for f, b in features.items()}, unseen,
                        {f: (u, o) for f, (u, o) in outside.items()}, data_rows=rows,
                        prediction_bins=bins_array(predictions),
                        prediction_rows=sum(predictions.values()), estimate_sum=estimates,
                        estimate_rows=sum(self._by_kind(v, "performance", window, now)),
                        class_prediction_bins={c: bins_array(b) for c, b in by_class.items()})

    def _by_kind(self, v: str, kind: str, window: str, now: float) -> list[float]:
        return [value for labels, value in self._by(names.WINDOW_ROWS.sample, "kind", v,
                                                    window, now) if labels.get("kind") == kind]

    def _concept(self, v: str, version: str, window: str, now: float) -> Counters:
        bins = {int(labels["bin"]): value for labels, value in self._by(
            names.RESIDUAL_BIN.sample, "bin", v, window, now)}
        sums = {labels["sign"]: value for labels, value in self._by(
            names.RESIDUAL_SUM.sample, "sign", v, window, now)}
        squares = sum(value for _, value in self._by(names.RESIDUAL_SQUARES.sample,
                                                     "model_version", v, window, now))
        # A classifier's sums (no series: a regression, the window has none).
        log_loss, correct = (self._total_or_none(metric, v, window, now) for metric in (
            names.RESIDUAL_LOG_LOSS.sample, names.RESIDUAL_CORRECT.sample))
        segments: dict[tuple[str, str], dict[int, float]] = {}
        for family, key in [*names.SEGMENT_SUMS.items(), (names.SEGMENT_RESIDUAL_SUM, None)]:
            by = ", ".join(label for label in family.labels if label != names.VERSION)
            for labels, value in self._by(family.sample, by, v, window, now):
                name = labels[names.SIGN] if key is None else key
                segments.setdefault((labels[names.FEATURE], name), {})[
                    int(labels[names.SEGMENT])] = value
        classes: dict[str, list[float]] = {}  # a multiclass model's (no series: another)
        for index, family in enumerate((names.CLASS_ROWS, names.CLASS_PROBABILITY)):
            for labels, value in self._by(family.sample, names.CLASS, v, window, now):
                classes.setdefault(labels[names.CLASS], [0.0, 0.0])[index] = value
        return Counters(version, None, residual_bins=bins_array(bins),
                        residual_positive=sums.get("positive", 0.0),
                        residual_negative=sums.get("negative", 0.0), residual_squares=squares,
                        concept_rows=sum(bins.values()),
                        segments={k: bins_array(v) for k, v in segments.items()},
                        log_loss_sum=log_loss, correct=correct,
                        classes={c: (n, p) for c, (n, p) in classes.items()} or None)

    def _total_or_none(self, metric: str, v: str, window: str, now: float) -> float | None:
        values = [value for _, value in self._by(metric, "model_version", v, window, now)]
        return sum(values) if values else None
