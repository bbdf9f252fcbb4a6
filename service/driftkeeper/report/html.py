"""The drift report as one self-contained HTML page, for people rather than programs.

``render_report`` writes the page and, next to it, a ``<stem>_files/`` folder with the PNGs.
The page embeds the same PNGs as base64 data URIs, so it can be mailed or attached to a
ticket on its own; the folder is there for slides and wikis. No JavaScript, no external CSS
or fonts: it opens the same offline, in a mail client or in a locked-down browser.

The ``model`` argument is a plain dict (see :func:`driftkeeper.report.build.model_summary`),
every key optional::

    {"version": "v3", "created_at": "2024-05-01T12:00:00Z", "kind": "hgb",
     "metrics": {"rmse": 540.1, "mae": 270.3, "r2": 0.98, "holdout_rows": 10788},
     "note": "shown when the model is not the one the report names"}
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import plots
from .text import (
    INSUFFICIENT,
    VERDICT_CLASSES,
    number,
    percent,
    timestamp,
    verdict,
)

NO_LABELS = "no labels"
NO_VERDICT = "not monitored"

Doc = Mapping[str, Any]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
max-width:1120px;margin:1.5em auto;padding:0 1em;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555;margin-top:0}.banner{font-size:1.1em}
table{border-collapse:collapse;font-size:.92em}
th,td{border-bottom:1px solid #e4e4e4;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.sub td:first-child{padding-left:1.8em;color:#555}
.drift{color:#c0392b;font-weight:bold}.ok{color:#2e7d32}.insufficient{color:#757575}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figure img{max-width:100%;height:auto;border:1px solid #eee}
.note{background:#f7f7f7;border-left:4px solid #bbb;padding:.5em .8em}
"""


def esc(value: object) -> str:
    """Every string from a report, a model or a file name goes through here."""
    return html.escape(str(value), quote=True)


# -- figures ------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "feature"


def _feature_hists(hists: Doc) -> Mapping[str, Doc]:
    """Per-feature histograms, from ``{"features": {...}, "residuals": ...}`` (what
    :func:`driftkeeper.drift.histograms.histograms` returns) or a flat ``{name: ...}``."""
    if isinstance(hists.get("features"), Mapping):
        return hists["features"]
    return {k: v for k, v in hists.items() if k != "residuals" and isinstance(v, Mapping)}


def _draw_features(report: Doc, hists: Doc, folder: Path) -> list[tuple[str, Path]]:
    """One figure per feature, in the report's (schema) order."""
    verdicts = report["data"]["features"]
    feature_hists = _feature_hists(hists)
    names = [n for n in verdicts if n in feature_hists]
    names += [n for n in feature_hists if n not in verdicts]
    figures = []
    for i, name in enumerate(names, start=1):
        path = folder / f"feature-{i:02d}-{_slug(name)}.png"
        plots.plot_feature(name, feature_hists[name], verdicts.get(name, {}), path)
        figures.append((f"{name}: reference vs current", path))
    return figures


def _has_labels(report: Doc) -> bool:
    concept = report.get("concept")
    return bool(concept) and (concept.get("samples") or 0) > 0


def _draw_concept(report: Doc, hists: Doc, folder: Path) -> list[tuple[str, Path]]:
    if not _has_labels(report):
        return []
    concept = report["concept"]
    figures = []
    residuals = hists.get("residuals")
    if residuals:
        figures.append(("residuals: reference vs current", plots.plot_residuals(
            residuals, concept, folder / "concept-residuals.png")))
    figures.append(("RMSE now vs reference", plots.plot_rmse(concept, folder / "concept-rmse.png")))
    return figures


def _clear_old_figures(folder: Path) -> None:
    """A previous report into the same folder may have had other features; only our own
    file names are removed."""
    for pattern in ("feature-*.png", "concept-*.png"):
        for old in folder.glob(pattern):
            old.unlink()


def _img(label: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(label)}" '
            f'width="{int(plots.FIGSIZE[0] * plots.DPI)}" '
            f'height="{int(plots.FIGSIZE[1] * plots.DPI)}"></figure>')


# -- tables -------------------------------------------------------------------------------


def _verdict_cell(words: str) -> str:
    css = VERDICT_CLASSES.get(words, VERDICT_CLASSES[INSUFFICIENT])
    return f'<td class="verdict {css}">{esc(words)}</td>'


def _row(cells: list[str], words: str, css: str = "") -> str:
    """A table row: plain cells (escaped here), numbers right-aligned, the verdict last."""
    tds = "".join(f'<td class="num">{esc(c)}</td>' if i in (2, 3, 5) else f"<td>{esc(c)}</td>"
                  for i, c in enumerate(cells))
    cls = f' class="{css}"' if css else ""
    return f"<tr{cls}>{tds}{_verdict_cell(words)}</tr>"


def _rule_cells(data: Doc) -> tuple[str, str]:
    """Score and threshold of the dataset rule, in the rule's own terms."""
    rule = data.get("rule", "any")
    if rule == "mean":
        return number(data.get("score")), number(data.get("threshold"))
    if rule == "share":
        share = data.get("share")
        return ("—" if share is None else percent(share),
                percent(data.get("share_threshold", 0.5)))
    ratio = data.get("statistic")
    drifted = len(data.get("drifted_features") or [])
    worst = "—" if ratio is None else f"{ratio:.2f}x its threshold"
    return f"{drifted} drifted (worst feature {worst})", "any feature over 1x"


def _data_row(data: Doc) -> str:
    score, threshold = _rule_cells(data)
    drifted = data.get("drifted_features") or []
    notes = f"drifted: {', '.join(drifted)}" if drifted else ""
    if data.get("low_impact"):
        notes += (("; " if notes else "") + f"not counted, moving predictions less than "
                  f"minImpact {data.get('min_impact', 0):.1%}: {', '.join(data['low_impact'])}")
    return _row(["data drift", f"rule: {data.get('rule', 'any')}", score, threshold, "",
                 number(data.get("samples")), notes], verdict(data.get("drift")))


def _prediction_row(prediction: Doc | None) -> str:
    """The model's predictions against its held-out predictions: drift in what it answers."""
    if not prediction:
        return _row(["prediction drift", "", "", "", "", "", "not monitored (off, or a model "
                     "trained without a prediction reference)"], NO_VERDICT)
    return _row(["prediction drift", prediction.get("method", ""),
                 number(prediction.get("score")), number(prediction.get("threshold")),
                 prediction.get("threshold_source", ""), number(prediction.get("samples")),
                 "predictions vs held-out predictions"], verdict(prediction.get("drift")))


def _performance_row(performance: Doc | None) -> str:
    """The RMSE the loss model estimates from the inputs, before any label."""
    if not performance:
        return _row(["estimated performance", "", "", "", "", "", "not monitored (off, or a "
                     "model trained without a loss model)"], NO_VERDICT)
    estimated, reference = performance.get("rmse_estimated"), performance.get("rmse_reference")
    notes = ("" if estimated is None else
             f"estimated RMSE {number(estimated)} vs held-out {number(reference)}")
    return _row(["estimated performance", "RMSE +% (no labels)",
                 number(performance.get("score")), number(performance.get("threshold")),
                 performance.get("threshold_source", ""), number(performance.get("samples")),
                 notes], verdict(performance.get("drift")))


def _concept_rows(concept: Doc | None) -> list[str]:
    if not concept or not concept.get("samples"):
        return [_row(["concept drift", "", "", "", "", "0", "no labelled rows"], NO_LABELS)]
    enough = concept.get("drift") is not None
    reasons = concept.get("reasons") or []
    ks, bias = concept.get("residual_ks") or {}, concept.get("bias_test") or {}
    rows = [_row(["concept drift", "any of 3 tests", "", "", "", number(concept["samples"]),
                  f"fired: {', '.join(reasons)}" if reasons else ""],
                 verdict(concept.get("drift")))]
    tests = [("RMSE increase", "relative", concept.get("score"), concept.get("threshold"),
              concept.get("threshold_source", ""), "rmse" in reasons if enough else None),
             ("residual distribution", "ks", ks.get("score"), ks.get("threshold"), "",
              ks.get("drift")),
             ("bias", "|mean shift|", bias.get("score"), bias.get("threshold"), "",
              bias.get("drift"))]
    rows += [_row([name, method, number(score), number(threshold), source, "", ""],
                  verdict(drift), css="sub")
             for name, method, score, threshold, source, drift in tests]
    return rows


def _feature_notes(f: Doc) -> str:
    notes = []
    if f.get("pvalue") is not None:
        notes.append(f"p = {f['pvalue']:.2g}")
    if f.get("unseen"):
        notes.append(f"{f['unseen']} unseen")
    if f.get("invalid"):
        notes.append(f"{f['invalid']} invalid")
    if f.get("impact_shift") is not None:
        notes.append(f"moved predictions {100 * f['impact_shift']:+.1f} % "
                     f"(±{100 * f['impact']:.1f} % per row)")
    return ", ".join(notes)


def _feature_row(name: str, f: Doc) -> str:
    return _row([name, f.get("method", ""), number(f.get("score")), number(f.get("threshold")),
                 f.get("threshold_source", ""), number(f.get("samples")), _feature_notes(f)],
                verdict(f.get("drift")))


def _summary(report: Doc) -> str:
    data = report["data"]
    head = "".join(f"<th>{h}</th>" for h in ("check", "method", "score", "threshold",
                                             "threshold source", "rows", "notes", "verdict"))
    body = [_data_row(data), _prediction_row(report.get("prediction")),
            _performance_row(report.get("performance")), *_concept_rows(report.get("concept"))]
    body += [_feature_row(name, f) for name, f in data["features"].items()]
    return (f'<section id="summary"><h2>Verdicts</h2><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></section>')


# -- sections -----------------------------------------------------------------------------


def _label_text(report: Doc) -> str:
    concept = report.get("concept")
    if not _has_labels(report):
        return NO_LABELS
    return f"{number(concept['samples'])} labelled rows"


def _verdict_span(words: str) -> str:
    css = VERDICT_CLASSES.get(words, VERDICT_CLASSES[INSUFFICIENT])
    return f'<span class="{css}">{esc(words)}</span>'


def _header(report: Doc, model: Doc) -> str:
    data = report["data"]
    version = report.get("model_version") or model.get("version") or "unknown"
    facts = [f"evaluated {timestamp(report.get('evaluated_at'))}",
             f"data window {number(data.get('samples'))} rows",
             f"concept window {_label_text(report)}",
             f"mode {report.get('mode', 'binned')}"]
    facts += [f"{key} {report[key]}" for key in ("policy", "source") if report.get(key)]
    concept_words = (verdict(report["concept"].get("drift")) if _has_labels(report)
                     else NO_LABELS)
    drifted = data.get("drifted_features") or []
    detail = f" ({', '.join(drifted)})" if drifted else ""
    return (f"<header><h1>Drift report: model {esc(version)}</h1>"
            f'<p class="meta">{esc(" · ".join(facts))}</p>'
            f'<p class="banner">data drift {_verdict_span(verdict(data.get("drift")))}'
            f"{esc(detail)} · concept drift {_verdict_span(concept_words)}</p></header>")


def _figures(section_id: str, title: str, figures: list[tuple[str, Path]], intro: str = ""
             ) -> str:
    imgs = "".join(_img(label, path) for label, path in figures)
    return (f'<section id="{section_id}"><h2>{esc(title)}</h2>{intro}'
            f'<div class="figures">{imgs}</div></section>')


def _concept_section(report: Doc, figures: list[tuple[str, Path]]) -> str:
    concept = report.get("concept")
    if not _has_labels(report):
        note = ("No labels: without actual values for the current rows (no target column in "
                "the CSV, or no feedback in the service's concept window) the model's error "
                "cannot be measured, so only data drift is reported.")
        return (f'<section id="concept"><h2>Concept drift</h2>'
                f'<p class="note">{esc(note)}</p></section>')
    if concept.get("log_loss_reference") is not None:
        return _figures("concept", "Concept drift", figures,
                        f"<p>{esc(_classifier_intro(concept))}</p>")
    limit = concept["rmse_reference"] * (1 + concept["threshold"])
    intro = (f"RMSE on {number(concept['samples'])} labelled rows is "
             f"{number(concept.get('rmse'))} against {number(concept['rmse_reference'])} on "
             f"held-out rows at training time (drift above {number(limit)}); the mean residual "
             f"moved by {number(concept.get('bias'))}. Verdict: "
             f"{verdict(concept.get('drift'))}.")
    return _figures("concept", "Concept drift", figures, f"<p>{esc(intro)}</p>")


def _classifier_intro(concept: Doc) -> str:
    """A classifier's concept drift in its own measures (the residual is the class index
    minus the predicted probability: RMSE is the Brier score's root)."""
    return (f"On {number(concept['samples'])} labelled rows the log loss is "
            f"{number(concept.get('log_loss'))} against {number(concept['log_loss_reference'])} "
            f"on held-out rows at training time, accuracy {number(concept.get('accuracy'))} "
            f"against {number(concept.get('accuracy_reference'))}, and calibration (observed "
            f"minus predicted rate of the positive class) {number(concept.get('calibration'))}"
            f"; RMSE (the Brier score's root) {number(concept.get('rmse'))} against "
            f"{number(concept['rmse_reference'])}. Verdict: {verdict(concept.get('drift'))}.")


def _model_section(model: Doc) -> str:
    if not model:
        return '<section id="model"><h2>Model</h2><p>No model information.</p></section>'
    metrics = model.get("metrics") or {}
    rows = [("version", model.get("version")), ("created", model.get("created_at")),
            ("estimator", model.get("kind")), ("held-out RMSE", number(metrics.get("rmse"))),
            ("held-out MAE", number(metrics.get("mae"))),
            ("held-out R²", number(metrics.get("r2"))),
            ("held-out log loss", number(metrics.get("log_loss"))),
            ("held-out accuracy", number(metrics.get("accuracy"))),
            ("held-out AUC", number(metrics.get("auc"))),
            ("held-out rows", number(metrics.get("holdout_rows")))]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows
                   if v not in (None, "—"))
    note = f'<p class="note">{esc(model["note"])}</p>' if model.get("note") else ""
    return f'<section id="model"><h2>Model</h2>{note}<table>{body}</table></section>'


HOW_TO_READ = (
    "Each feature's figure compares the reference (the data the model was profiled on, "
    "filled) with the current window (line); numerical features are drawn as densities over "
    "the reference's quantile bins, the x-axis cut to the 1st-99th percentile, and values "
    "outside the reference's range are listed in the title. A score is 0 for identical "
    "distributions and grows as they part. A feature drifts when its score exceeds its "
    "threshold. Thresholds marked auto are calibrated from the reference at the window's size, "
    "so that a small window, whose scores are noisy, does not false-alarm; floor means the "
    "practical minimum of the method applied, policy a fixed value from the DriftPolicy. "
    "Prediction drift compares the model's predictions on the current window with its "
    "predictions on held-out rows at training time: it needs no labels, and it moves only "
    "when the inputs move in a way the model responds to. "
    "Estimated performance is the window's RMSE as a loss model (fitted at training time on "
    "held-out rows' squared errors) estimates it from the inputs and predictions alone: it "
    "sees traffic moving towards rows the model gets wrong weeks before their labels, but "
    "not a change of the feature-target relation, which only labels show. "
    "Concept drift compares the model's residuals (actual minus predicted value) with those "
    "on held-out rows at training time: a higher RMSE, a different residual distribution or "
    "a shifted mean. \"Insufficient data\" means the window holds fewer rows than minSamples: "
    "it is not a verdict of no drift."
)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.0f} %"


def _where_section(concept: Doc | None) -> str:
    """Where concept drift lives: the named locations, then every segment that moved."""
    located = (concept or {}).get("segments")
    if not located:
        return ""
    names = "".join(f"<li>{esc(loc['message'])}</li>" for loc in located.get("locations", []))
    lead = (f"<ul>{names}</ul>" if names else "<p>No segment stands out: the residuals "
            "moved alike everywhere, or too little to name.</p>")
    flagged = [r for r in located.get("segments", []) if r.get("flagged")]
    head = "".join(f"<th>{h}</th>" for h in ("feature", "segment", "rows", "actual vs model",
                                             "bias", "RMSE change", "adjusted p"))
    rows = "".join(
        f"<tr><td>{esc(r['feature'])}</td><td>{esc(r['segment'])}</td>"
        f"<td>{number(r['rows'])}</td><td>{100 * r['shift']:+.1f} %</td>"
        f"<td>{number(r['bias'])}</td><td>{_percent(r.get('rmse_ratio'))}</td>"
        f"<td>{r['adjusted']:.2g}</td></tr>" for r in flagged)
    table = (f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
             if flagged else "")
    tested = located.get("tested", 0)
    return (f'<section id="where"><h2>Where concept drift lives</h2>{lead}'
            f'<p class="note">{tested} segments tested (category levels, quartile bands of '
            "numerical features) against the held-out residuals; segments whose shift is "
            "significant after a Benjamini-Hochberg correction are listed.</p>"
            f"{table}</section>")


def _page(report: Doc, model: Doc, features: list[tuple[str, Path]],
          concept: list[tuple[str, Path]]) -> str:
    version = report.get("model_version") or model.get("version") or "unknown"
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>Drift report: model {esc(version)}</title><style>{CSS}</style></head><body>",
        _header(report, model),
        _summary(report),
        _figures("features", "Features: reference vs current", features),
        _concept_section(report, concept),
        _where_section(report.get("concept")),
        _model_section(model),
        f'<section id="how-to-read"><h2>How to read this</h2><p>{esc(HOW_TO_READ)}</p>'
        "</section></body></html>\n",
    ])


def render_report(report: Doc, hists: Doc, model: Doc, output: str | Path) -> Path:
    """Write the HTML page ``output`` and its PNGs into ``<stem>_files/`` beside it.

    ``report`` is ``DriftReport.to_dict()`` (extra keys ``policy`` and ``source`` are shown
    when present), ``hists`` the output of ``histograms()``, ``model`` the dict described in
    the module docstring. Returns the path of the page.
    """
    output = Path(output)
    folder = output.with_name(f"{output.stem}_files")
    folder.mkdir(parents=True, exist_ok=True)
    _clear_old_figures(folder)
    feature_figures = _draw_features(report, hists, folder)
    concept_figures = _draw_concept(report, hists, folder)
    page = _page(report, model, feature_figures, concept_figures)
    output.write_text(page, encoding="utf-8")
    return output
