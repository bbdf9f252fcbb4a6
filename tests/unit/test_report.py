"""The HTML drift report: self-contained, figures valid, verdicts the same as the engine's."""

from __future__ import annotations

import base64
import re
import socket
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.drift.evaluate import evaluate_concept, evaluate_data
from driftkeeper.drift.histograms import histograms
from driftkeeper.drift.report import DriftReport
from driftkeeper.drift.windows import data_window, residual_window
from driftkeeper.errors import DataError, DriftkeeperError
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import default_policy
from driftkeeper.report import (
    ServiceError,
    model_summary,
    render_report,
    report_from_csv,
    report_from_service,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FEATURES = ("carat", "cut", "color", "clarity", "depth", "table")


class _Tables(HTMLParser):
    """Cell texts of every table row, and the text of each <section> by id."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.sections: dict[str, str] = {}
        self._section: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._section = dict(attrs).get("id")
            self.sections[self._section or ""] = ""
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self.sections[self._section] += data


def _parse(page: Path) -> _Tables:
    parser = _Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _verdicts(page: Path) -> dict[str, str]:
    """Summary table: first cell (check or feature) -> last cell (verdict)."""
    return {row[0]: row[-1] for row in _parse(page).rows if len(row) == 8}


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory, diamonds: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("report-csv")
    current = diamonds.sample(1500, random_state=7)
    odd = current.assign(carat=current["carat"] * 1.3).astype({"cut": str})
    odd.loc[odd.index[:30], "cut"] = "Superb"  # unseen: counted, and such rows get no prediction
    odd.loc[odd.index[30:35], "depth"] = None  # invalid: counted, never scored
    odd.to_csv(root / "carat.csv", index=False)
    current.drop(columns=["price"]).to_csv(root / "unlabelled.csv", index=False)
    dearer = current["color"].isin(["D", "E", "F"])
    current.assign(price=np.where(dearer, current["price"] * 1.25, current["price"])).to_csv(
        root / "price.csv", index=False)
    current.drop(columns=["table"]).to_csv(root / "missing.csv", index=False)
    (root / "empty.csv").write_text("")
    return root


@pytest.fixture(scope="module")
def carat_page(trained_model_dir: Path, csvs: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-out") / "carat.html"
    return report_from_csv(trained_model_dir, csvs / "carat.csv", out)


def test_page_is_self_contained(carat_page: Path) -> None:
    text = carat_page.read_text(encoding="utf-8")
    assert carat_page.is_file()
    assert "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<script|<link|@import|url\(", text, re.IGNORECASE)
    assert set(FEATURES) <= set(_verdicts(carat_page))
    for name in FEATURES:
        assert f'alt="{name}: reference vs current"' in text


def test_page_shows_the_drifted_feature(carat_page: Path) -> None:
    verdicts = _verdicts(carat_page)
    assert set(FEATURES) <= set(verdicts)
    assert verdicts["carat"] == "DRIFT"
    assert verdicts["depth"] == "ok"
    assert verdicts["data drift"] == "DRIFT"
    assert verdicts["prediction drift"] == "DRIFT"  # carat x1.3: the model prices higher
    # the price column was left alone while carat grew: the model now overprices
    assert verdicts["concept drift"] == "DRIFT"
    rows = {row[0]: row for row in _parse(carat_page).rows if len(row) == 8}
    assert "30 unseen" in rows["cut"][6] and "5 invalid" in rows["depth"][6]
    assert rows["concept drift"][5] == "1,465"  # rows the model could not score have no residual
    assert rows["prediction drift"][1] == "ks" and rows["prediction drift"][5] == "1,465"
    # Heavier diamonds are harder to price: the estimated RMSE rises, before any label.
    assert verdicts["estimated performance"] == "DRIFT"
    performance = rows["estimated performance"]
    assert performance[5] == "1,465" and "estimated RMSE" in performance[6]


def test_page_says_where_concept_drift_lives(trained_model_dir: Path,
                                             tmp_path: Path, diamonds: pd.DataFrame) -> None:
    rows = diamonds.sample(2000, random_state=5)
    dearer = rows["color"].isin(["D", "E", "F"])
    rows = rows.assign(price=rows["price"].where(~dearer, rows["price"] * 1.25))
    rows.to_csv(tmp_path / "dearer.csv", index=False)
    page = report_from_csv(trained_model_dir, tmp_path / "dearer.csv", tmp_path / "p.html")
    assert _verdicts(page)["concept drift"] == "DRIFT"
    text = page.read_text(encoding="utf-8")
    where = text.split('<section id="where">', 1)[1].split("</section>", 1)[0]
    assert "<li>color D, E, F: price " in where and "above the model</li>" in where
    flagged = {row[1] for row in _parse(page).rows if len(row) == 7 and row[0] == "color"}
    assert flagged == {"D", "E", "F"}


def test_figures_are_valid_pngs_and_embedded(carat_page: Path) -> None:
    folder = carat_page.with_name("carat_files")
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == len(FEATURES) + 2  # plus residuals and RMSE
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == PNG_SIGNATURE, png
        assert len(data) > 5_000, png
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                          carat_page.read_text(encoding="utf-8"))
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)


def test_without_prices_the_page_says_there_are_no_labels(trained_model_dir: Path,
                                                          csvs: Path, tmp_path: Path) -> None:
    page = report_from_csv(trained_model_dir, csvs / "unlabelled.csv", tmp_path / "r.html")
    parsed = _parse(page)
    assert "no labels" in parsed.sections["concept"].lower()
    assert _verdicts(page)["concept drift"] == "no labels"
    assert len(list((tmp_path / "r_files").glob("concept-*.png"))) == 0


def test_dearer_colours_show_concept_drift(trained_model_dir: Path, csvs: Path,
                                           tmp_path: Path) -> None:
    page = report_from_csv(trained_model_dir, csvs / "price.csv", tmp_path / "price.html")
    verdicts = _verdicts(page)
    assert verdicts["concept drift"] == "DRIFT"
    assert verdicts["bias"] == "DRIFT"  # a quarter on half the rows: the mean residual moves
    assert verdicts["data drift"] == "ok"  # the inputs did not change
    assert "RMSE on 1,500 labelled rows" in _parse(page).sections["concept"]
    assert {p.name for p in (tmp_path / "price_files").glob("concept-*.png")} == {
        "concept-residuals.png", "concept-rmse.png"}


def test_missing_column_is_a_data_error(trained_model_dir: Path, csvs: Path,
                                        tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing column.*table"):
        report_from_csv(trained_model_dir, csvs / "missing.csv", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("name", "message"), [("nope.csv", "not found"),
                                               ("empty.csv", "cannot read")])
def test_unreadable_csv_is_a_data_error(trained_model_dir: Path, csvs: Path, tmp_path: Path,
                                        name: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        report_from_csv(trained_model_dir, csvs / name, tmp_path / "r.html")


def _in_process(model_dir: Path, frame: pd.DataFrame, labelled: bool = True
                ) -> tuple[dict, dict, dict]:
    """Report, histograms and model dicts built the way the service builds them (the service
    always sends a concept verdict, with 0 samples before any feedback)."""
    bundle = ModelStore(model_dir).load()
    settings = default_policy().monitor
    X = bundle.schema.encode(frame)
    window = data_window(bundle.profile, X)
    actual = frame["price"].to_numpy() if labelled else np.empty(0)
    predicted = bundle.model.predict(X) if labelled else np.empty(0)
    residuals = residual_window(bundle.profile, actual - predicted)
    report = DriftReport(evaluate_data(bundle.profile, window, settings.data),
                         evaluate_concept(bundle.profile, residuals, settings.concept),
                         bundle.version, 1_700_000_000.0).to_dict()
    return report, histograms(bundle.profile, window, residuals), model_summary(bundle)


def test_twenty_rows_read_insufficient_data(trained_model_dir: Path, diamonds: pd.DataFrame,
                                            tmp_path: Path) -> None:
    report, hists, model = _in_process(trained_model_dir, diamonds.sample(20, random_state=3))
    page = render_report(report, hists, model, tmp_path / "few.html")
    verdicts = _verdicts(page)
    for check in (*FEATURES, "data drift", "concept drift", "RMSE increase"):
        assert verdicts[check] == "insufficient data", check
    assert "2023-11-14 22:13:20 UTC" in page.read_text(encoding="utf-8")
    assert len(list((tmp_path / "few_files").glob("*.png"))) == len(FEATURES) + 2


def test_service_report_without_feedback_and_hostile_strings(
        trained_model_dir: Path, diamonds: pd.DataFrame, tmp_path: Path) -> None:
    report, hists, model = _in_process(trained_model_dir, diamonds.sample(300, random_state=4),
                                       labelled=False)
    assert report["concept"]["samples"] == 0 and hists["residuals"]["rmse"] is None
    report["source"] = "<script>alert(1)</script>"
    model["note"] = "v9 & <b>friends</b>"
    page = render_report(report, hists, model, tmp_path / "svc.html")
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "&lt;script&gt;" in text
    assert "<b>friends" not in text
    assert _verdicts(page)["concept drift"] == "no labels"
    assert "no labels" in _parse(page).sections["concept"].lower()


def test_unreachable_service_names_the_url(trained_model_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ServiceError, match=re.escape(url)) as caught:
        report_from_service(trained_model_dir, url, tmp_path / "r.html", timeout=2)
    assert isinstance(caught.value, DriftkeeperError)
