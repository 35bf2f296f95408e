"""The HTML report, parsed: sections, inlined charts, headline figures, escaping, no secrets."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from _report_world import HOSTILE_LABEL, SECRETS, build_audit

from asg_audit.report import render
from asg_audit.report.content import headline_values, txid_url


class _Page(HTMLParser):
    """Collects what the tests look at: ids, images, links, scripts, cards, table headers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.scripts = 0
        self.event_handlers: list[str] = []
        self.cards: dict[str, str] = {}
        self.tables = 0
        self.tables_with_header = 0
        self.text: list[str] = []
        self._in_table = False
        self._table_has_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        self.event_handlers += [k for k in a if k.startswith("on")]
        if tag == "img":
            self.images.append(a)
        elif tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        elif tag == "script":
            self.scripts += 1
        elif tag == "li" and a.get("data-key") is not None:
            self.cards[str(a["data-key"])] = str(a.get("data-value"))
        elif tag == "table":
            self.tables += 1
            self._table_has_th = False
        elif tag == "th":
            self._table_has_th = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._table_has_th:
            self.tables_with_header += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("report_html")
    audit = build_audit(tmp)
    rendered = render(audit, tmp / "reports", formats="html,json")
    page = _Page()
    html = rendered.paths["html"].read_text(encoding="utf-8")
    page.feed(html)
    return audit, rendered, html, page


def test_report_html_has_every_section(report) -> None:
    _, _, _, page = report
    expected = {"headline", "latency", "backlog", "consensus", "costs", "collection",
                "findings", "methodology", "configuration"}  # fmt: skip
    assert expected <= page.ids


def test_report_html_inlines_every_chart_as_png_with_alt_text(report) -> None:
    _, rendered, _, page = report
    assert len(page.images) == len(rendered.summary["charts"]) >= 8
    for img in page.images:
        src = str(img["src"])
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert img.get("alt") and len(str(img["alt"])) > 20


def test_report_html_headline_numbers_equal_the_audit(report) -> None:
    audit, _, _, page = report
    values = headline_values(audit)
    s = audit.summary()
    assert int(page.cards["tasks"]) == s["tasks"]
    assert int(page.cards["settled"]) == s["settled"]
    assert int(page.cards["pending"]) == s["pending"]
    assert int(page.cards["other_status"]) == s["other_status"]
    assert s["pending"] + s["other_status"] == s["unsettled"] == s["tasks"] - s["settled"]
    assert (
        int(page.cards["stuck"]) == audit.findings.filter(pl.col("check_id") == "task.stuck").height
    )
    assert float(page.cards["latency_p50_s"]) == pytest.approx(s["latency_p50_s"])
    assert float(page.cards["latency_p95_s"]) == pytest.approx(s["latency_p95_s"])
    assert float(page.cards["share_over_slo"]) == pytest.approx(s["share_over_slo"])
    assert float(page.cards["confidence_mean"]) == pytest.approx(s["confidence_mean"])
    assert float(page.cards["agreement_rate"]) == pytest.approx(s["agreement_rate"])
    assert int(page.cards["spent_sats"]) == s["known_cost_sats"]
    for sev in ("fail", "warn", "info"):
        n = audit.findings.filter(pl.col("severity") == sev).height
        assert int(page.cards[f"findings_{sev}"]) == n == values[f"findings_{sev}"]


def test_report_html_is_self_contained(report) -> None:
    _, _, html, page = report
    assert page.scripts == 0
    assert "<link" not in html and "@import" not in html and "url(" not in html
    external = [u for u in page.links if not u.startswith(("#", "https://whatsonchain.com/tx/"))]
    assert external == []


def test_report_html_shows_a_hostile_label_as_text(report) -> None:
    _, _, html, page = report
    assert HOSTILE_LABEL not in html  # never raw
    assert any(HOSTILE_LABEL in t for t in page.text)  # but shown, as text
    assert page.event_handlers == []


def test_report_html_every_table_has_headers(report) -> None:
    _, _, _, page = report
    assert page.tables > 5
    assert page.tables_with_header == page.tables


def test_report_html_links_only_well_formed_txids_to_the_explorer(report) -> None:
    audit, _, _, page = report
    txids = audit.findings.filter(pl.col("entity_type") == "txid")["entity_id"].to_list()
    linked = {u.rsplit("/", 1)[1] for u in page.links if u.startswith("https://whatsonchain")}
    assert linked, "the planted shared txid should be linked"
    assert linked <= {t for t in txids if txid_url("txid", t)}
    assert txid_url("txid", "zz" * 32) is None
    assert txid_url("txid", "0" * 64) is None
    assert txid_url("task", "ab" * 32) is None


def test_report_html_and_json_hold_no_secret(report) -> None:
    _, rendered, html, _ = report
    summary = rendered.paths["json"].read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in html
        assert secret not in summary
    assert "collector.concurrency" in html  # non-secret settings are shown


def test_report_html_groups_findings_by_check(report) -> None:
    audit, rendered, html, _ = report
    checks = set(audit.findings["check_id"].unique().to_list())
    for check_id in checks:
        assert f'data-check="{check_id}"' in html
    assert {
        c["check_id"] for c in json.loads(rendered.paths["json"].read_text())["checks"]
    } == checks


def test_report_html_stays_small(report) -> None:
    _, rendered, _, _ = report
    assert Path(rendered.paths["html"]).stat().st_size < 2_000_000


def test_report_repr_html_shows_the_same_headline(report) -> None:
    audit, _, _, page = report
    fragment = _Page()
    fragment.feed(audit._repr_html_())
    assert fragment.cards == page.cards
    assert fragment.scripts == 0
