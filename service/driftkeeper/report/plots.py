"""Small PNG figures for the drift report: one per feature, two for concept drift.

Every function takes the plain dicts of :func:`driftkeeper.drift.histograms.histograms` and
``DriftReport.to_dict()``, so a service's report and a CSV's are drawn the same way. Figures
are drawn off-screen (Agg) and closed after saving: a report with many features must not
leave figures behind in a long-running process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .text import DRIFT, VERDICT_COLOURS, number, percent, verdict

FIGSIZE = (5.0, 3.0)
DPI = 100
REFERENCE_COLOUR = "#4c72b0"
CURRENT_COLOUR = "#dd8452"
VIEW_TAIL = 0.01
"""The x-axis spans the 1st..99th percentile of either distribution: quantile bins put the
reference's extreme percent in wide edge bins that would squash everything else."""
DISPLAY_BINS = 60
"""At most this many drawn bins across the view (see ``_display_groups``)."""

Hist = Mapping[str, Any]


@contextmanager
def _figure() -> Iterator[tuple[Figure, Axes]]:
    """A styled figure that is closed whatever happens; seaborn's style is scoped to it so
    the report does not restyle the caller's own plots."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=0.95):
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _shares(counts: Sequence[float]) -> np.ndarray:
    """Counts as shares of their sum; all zeros for an empty window rather than NaN."""
    values = np.asarray(counts, dtype=np.float64)
    total = float(values.sum())
    return values / total if total > 0 else np.zeros_like(values)


def _title(ax: Axes, lines: list[str], drift: bool | None) -> None:
    """What was measured on the left, the verdict in its colour on the right."""
    ax.set_title("\n".join(lines), loc="left", fontsize=8.5)
    ax.set_title(verdict(drift), loc="right", fontsize=10, fontweight="bold",
                 color=VERDICT_COLOURS[verdict(drift)])


def _score_line(method: str, score: float | None, threshold: float | None,
                source: str | None = None) -> str:
    line = f"{method} {number(score)} vs threshold {number(threshold)}"
    return f"{line} ({source})" if source else line


def _feature_lines(name: str, result: Mapping[str, Any], *notes: str | None) -> list[str]:
    """Title lines of a feature figure: name, score against threshold, then any notes."""
    score = _score_line(result.get("method", "?"), result.get("score"),
                        result.get("threshold"), result.get("threshold_source"))
    return [name, score, *(note for note in notes if note)]


# -- numerical distributions ----------------------------------------------------------------


def _plot_edges(edges: np.ndarray) -> np.ndarray:
    """Edges with positive widths: a constant reference has one zero-width bin."""
    if len(edges) >= 2 and edges[-1] > edges[0]:
        return edges
    centre = float(edges[0]) if len(edges) else 0.0
    return np.array([centre - 0.5, centre + 0.5])


def _x_at(edges: np.ndarray, inner: np.ndarray, q: float) -> float | None:
    """The value below which a share ``q`` of a binned distribution lies (linear within bins)."""
    total = inner.sum()
    if total <= 0:
        return None
    cdf = np.concatenate([[0.0], np.cumsum(inner) / total])
    return float(np.interp(q, cdf, edges))


def _view(edges: np.ndarray, *inner: np.ndarray) -> tuple[float, float]:
    """x-limits holding the central part of every distribution, with a small margin."""
    lows = [x for s in inner if (x := _x_at(edges, s, VIEW_TAIL)) is not None]
    highs = [x for s in inner if (x := _x_at(edges, s, 1 - VIEW_TAIL)) is not None]
    lo, hi = (min(lows), max(highs)) if lows and highs else (edges[0], edges[-1])
    if not hi > lo:
        lo, hi = edges[0], edges[-1]
    margin = 0.03 * (hi - lo)
    return max(lo - margin, edges[0]), min(hi + margin, edges[-1])


def _out_of_range(edges: np.ndarray, ref: np.ndarray, cur: np.ndarray) -> str | None:
    """'current: 2.0% below 0.2, 3.1% above 5.01' — the under/overflow bins have no width,
    so they cannot be drawn as densities; their shares go into the title instead."""
    parts = []
    for where, idx, edge in (("below", 0, edges[0]), ("above", -1, edges[-1])):
        if cur[idx] > 0 or ref[idx] > 0:
            extra = f" (reference {percent(ref[idx])})" if ref[idx] > 0 else ""
            parts.append(f"{percent(cur[idx])} {where} {edge:.4g}{extra}")
    return f"current: {', '.join(parts)}" if parts else None


def _display_groups(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Indices of the edges to keep so that no drawn bin is narrower than 1/DISPLAY_BINS of
    the view. Quantile bins of tied values (carat: 0.30, 0.31, ...) are a hundredth wide
    and would turn densities into spikes; merging whole bins keeps the counts exact."""
    min_width = (hi - lo) / DISPLAY_BINS
    keep = [0]
    for k in range(1, len(edges)):
        if edges[k] - edges[keep[-1]] >= min_width:
            keep.append(k)
    if keep[-1] != len(edges) - 1:  # a narrow remainder joins the last drawn bin
        if len(keep) > 1:
            keep[-1] = len(edges) - 1
        else:
            keep.append(len(edges) - 1)
    return np.asarray(keep)


def _draw_densities(ax: Axes, hist: Hist) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference (filled) and current (line) as share / bin width over the profile's bins.

    Returns the profile's edges and the full reference/current shares, under/overflow
    included."""
    raw_edges = np.asarray(hist["edges"], dtype=np.float64)
    ref, cur = _shares(hist["reference"]), _shares(hist["current"])
    edges = _plot_edges(raw_edges)
    lo, hi = _view(edges, ref[1:-1], cur[1:-1])
    keep = _display_groups(edges, lo, hi)
    shown = edges[keep]
    widths = np.diff(shown)
    ref_inner = np.add.reduceat(ref[1:-1], keep[:-1])
    cur_inner = np.add.reduceat(cur[1:-1], keep[:-1])
    ax.stairs(ref_inner / widths, shown, fill=True, alpha=0.35, color=REFERENCE_COLOUR,
              label="reference")
    if cur_inner.sum() > 0:
        ax.stairs(cur_inner / widths, shown, linewidth=1.5, color=CURRENT_COLOUR,
                  label="current")
    ax.set_xlim(lo, hi)
    ax.set_ylabel("density")
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    return raw_edges, ref, cur


def _invalid_note(hist: Hist) -> str | None:
    """Rows the window could not bin (NaN, non-numeric): counted, never scored."""
    return f"{hist['invalid']} invalid (not scored)" if hist.get("invalid") else None


def plot_numerical(name: str, hist: Hist, result: Mapping[str, Any], path: Path) -> Path:
    """Reference vs current density of one numerical feature over the profile's bins."""
    with _figure() as (fig, ax):
        edges, ref, cur = _draw_densities(ax, hist)
        ax.set_xlabel(name)
        lines = _feature_lines(name, result, _out_of_range(edges, ref, cur),
                               _invalid_note(hist))
        _title(ax, lines, result.get("drift"))
        return _save(fig, path)


# -- categorical distributions --------------------------------------------------------------


def plot_categorical(name: str, hist: Hist, result: Mapping[str, Any], path: Path) -> Path:
    """Side-by-side shares per level, plus an 'unseen' bar when the current window has any."""
    labels = [str(level) for level in hist["levels"]]
    ref_counts = list(hist["reference"])
    cur_counts = list(hist["current"])
    unseen = int(hist.get("unseen") or 0)
    if unseen:
        labels.append("unseen")
        ref_counts.append(0)
        cur_counts.append(unseen)
    ref, cur = _shares(ref_counts), _shares(cur_counts)
    x = np.arange(len(labels))
    with _figure() as (fig, ax):
        ax.bar(x - 0.2, ref, width=0.4, color=REFERENCE_COLOUR, alpha=0.6, label="reference")
        ax.bar(x + 0.2, cur, width=0.4, color=CURRENT_COLOUR, label="current")
        long_labels = len(labels) > 5 or max((len(s) for s in labels), default=0) > 6
        ax.set_xticks(x, labels, rotation=30 if long_labels else 0,
                      ha="right" if long_labels else "center")
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=7, loc="upper right", frameon=False)
        _title(ax, _feature_lines(name, result, _invalid_note(hist)), result.get("drift"))
        return _save(fig, path)


def plot_feature(name: str, hist: Hist, result: Mapping[str, Any], path: Path) -> Path:
    """The right figure for the feature's kind (histograms say 'levels' or 'edges')."""
    if "levels" in hist:
        return plot_categorical(name, hist, result, path)
    return plot_numerical(name, hist, result, path)


# -- concept drift ------------------------------------------------------------------------


def plot_residuals(hist: Hist, concept: Mapping[str, Any], path: Path) -> Path:
    """Residual (actual - predicted) densities, reference vs current, with both means marked:
    a shifted mean is a biased model, a wider shape a less accurate one."""
    test = concept.get("residual_ks") or {}
    with _figure() as (fig, ax):
        edges, ref, cur = _draw_densities(ax, hist)
        for mean, colour in ((hist.get("mean_reference"), REFERENCE_COLOUR),
                             (hist.get("mean"), CURRENT_COLOUR)):
            if mean is not None:
                ax.axvline(mean, color=colour, linestyle=":", linewidth=1.2)
        ax.set_xlabel("residual = actual - predicted")
        lines = ["residuals (dotted: means)",
                 _score_line("KS", test.get("score"), test.get("threshold"))]
        outside = _out_of_range(edges, ref, cur)
        if outside:
            lines.append(outside)
        _title(ax, lines, test.get("drift"))
        return _save(fig, path)


def _rmse_drift(concept: Mapping[str, Any]) -> bool | None:
    """The RMSE test's own verdict: the concept verdict may come from the other tests."""
    if concept.get("drift") is None:
        return None
    return "rmse" in (concept.get("reasons") or [])


def plot_rmse(concept: Mapping[str, Any], path: Path) -> Path:
    """RMSE now vs the held-out reference RMSE, with the line the current RMSE must stay under:
    ``rmse_reference * (1 + threshold)``."""
    reference = float(concept["rmse_reference"])
    current = concept.get("rmse")
    limit = reference * (1.0 + float(concept["threshold"]))
    heights = [reference, float(current) if current is not None else 0.0]
    with _figure() as (fig, ax):
        bars = ax.bar(["reference (held-out)", "current"], heights, width=0.5,
                      color=[REFERENCE_COLOUR, CURRENT_COLOUR])
        ax.bar_label(bars, labels=[number(reference), number(current)], fontsize=8,
                     label_type="center", color="white", fontweight="bold")
        ax.axhline(limit, color=VERDICT_COLOURS[DRIFT], linestyle="--", linewidth=1.2,
                   label=f"threshold {number(limit)}")
        ax.set_ylim(0, max(*heights, limit) * 1.2)
        ax.set_ylabel("RMSE (target units)")
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        lines = ["RMSE now vs reference",
                 f"increase {number(concept.get('score'))} vs threshold "
                 f"{number(concept.get('threshold'))}; bias {number(concept.get('bias'))}"]
        _title(ax, lines, _rmse_drift(concept))
        return _save(fig, path)
