"""The notebooks run top to bottom on a store built from the simulator, in a real Jupyter kernel,
show every chart they draw (an image/png output), and chart the columns their titles name.

On an empty store they say there is nothing to plot instead of drawing empty axes, and on a
store of one settled task its one-point curves show (a marker: a one-point step draws no line).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _records import settled_line
from nbclient import NotebookClient

import asg_audit
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world

NB_DIR = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))

# Appended to the notebook after its own cells, in the same kernel: dumps what every figure the
# notebook left in its namespace actually draws (each axes' title, labels, lines and bars), and
# the moment the notebook's audit was taken at, so the test can recompute the same figures.
PROBE = r"""
import json as _json
import matplotlib.dates as _mdates
import matplotlib.figure as _mfigure

def _probe_axes(ax):
    bars = [
        {"x": _mdates.num2date(p.get_x() + p.get_width() / 2).isoformat(), "height": float(p.get_height())}
        for p in ax.patches
    ]
    lines = [
        {"label": ln.get_label(), "x": [float(v) for v in ln.get_xdata()],
         "y": [float(v) for v in ln.get_ydata()], "marker": str(ln.get_marker())}
        for ln in ax.get_lines()
    ]
    return {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "lines": lines, "bars": bars}

_figures = {id(v): v for v in list(globals().values()) if isinstance(v, _mfigure.Figure)}
print("PROBE" + _json.dumps({
    "as_of": audit.as_of.isoformat(),
    "figures": len(_figures),
    "axes": [_probe_axes(ax) for f in _figures.values() for ax in f.axes],
}))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nb")
    world = generate_world(WorldConfig(seed=11, tasks=400, anomalies="all"))
    world.write_submissions(folder / "subs.ndjson")
    world.write_results_export(folder / "results.jsonl")
    db = folder / "audit.duckdb"
    track_file(db, folder / "subs.ndjson")
    ingest_paths(db, [folder / "results.jsonl"])
    return db


def _execute(store: Path) -> dict[str, nbformat.NotebookNode]:
    """Each notebook run once on `store`, then the probe cell, in one real kernel (headless)."""
    done: dict[str, nbformat.NotebookNode] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASG_AUDIT_DB", str(store))
        mp.delenv("DISPLAY", raising=False)
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            nb.cells.append(nbformat.v4.new_code_cell(PROBE))
            NotebookClient(
                nb,
                timeout=180,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
            done[path.name] = nb
    return done


@pytest.fixture(scope="module")
def executed(store: Path) -> dict[str, nbformat.NotebookNode]:
    return _execute(store)


def _small_store(folder: Path, lines: list[str]) -> Path:
    export = folder / "results.jsonl"
    export.write_text("".join(line + "\n" for line in lines))
    db = folder / "audit.duckdb"
    ingest_paths(db, [export])
    return db


@pytest.fixture(scope="module")
def executed_empty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nbformat.NotebookNode]:
    """The notebooks on a store made from an empty export: no tasks at all."""
    return _execute(_small_store(tmp_path_factory.mktemp("nb_empty"), []))


@pytest.fixture(scope="module")
def executed_one(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nbformat.NotebookNode]:
    """The notebooks on a store of one task, settled 40 s after it was created."""
    return _execute(_small_store(tmp_path_factory.mktemp("nb_one"), [settled_line("t1")]))


def _outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Every output of every code cell, in order."""
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def _probe(nb: nbformat.NotebookNode) -> dict[str, Any]:
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert text.startswith("PROBE"), text
    data: dict[str, Any] = json.loads(text.removeprefix("PROBE"))
    return data


def _axes(probe: dict[str, Any], title_word: str) -> dict[str, Any]:
    found = [a for a in probe["axes"] if title_word.lower() in a["title"].lower()]
    assert len(found) == 1, [a["title"] for a in probe["axes"]]
    assert found[0]["xlabel"] and found[0]["ylabel"], found[0]
    return found[0]


def _curve(axes: dict[str, Any]) -> dict[str, Any]:
    """The data line of an axes: the longest one (reference lines such as the SLO have 2 points)."""
    return max(axes["lines"], key=lambda line: len(line["x"]))


def _plot_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        c
        for c in nb.cells[:-1]
        if c.cell_type == "code" and ("plt.subplots" in c.source or "plt.figure" in c.source)
    ]


def test_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"walkthrough.ipynb", "latency.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_and_shows_its_charts(
    path: Path, executed: dict[str, nbformat.NotebookNode]
) -> None:
    nb = executed[path.name]
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # The first cell shows the audit summary as HTML (Audit._repr_html_).
    first = nb.cells[1].outputs
    assert any("text/html" in o.get("data", {}) for o in first)
    # Every cell that draws a chart shows it: an image/png output, as Jupyter displays it.
    plot_cells = _plot_cells(nb)
    assert plot_cells
    for cell in plot_cells:
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pngs, cell.source
        assert all(len(o["data"]["image/png"]) > 1000 for o in pngs)
    assert _probe(nb)["figures"] >= len(plot_cells)


def test_latency_notebook_charts_the_ecdf_and_the_survival_curve(
    store: Path, executed: dict[str, nbformat.NotebookNode]
) -> None:
    nb = executed["latency.ipynb"]
    probe = _probe(nb)
    audit = asg_audit.analyze(store, as_of=datetime.fromisoformat(probe["as_of"]))

    ecdf = audit["latency_ecdf"]
    assert ecdf.height > 10
    line = _curve(_axes(probe, "ECDF"))
    assert line["x"] == ecdf["latency_s"].to_list()
    assert line["y"] == pytest.approx(ecdf["cum_share"].to_list(), abs=1e-12)
    assert line["y"][-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(line["y"], line["y"][1:], strict=False))

    surv = audit["survival"]
    assert surv.height > 10
    line = _curve(_axes(probe, "unsettled"))
    assert line["x"] == surv["t"].to_list()
    assert line["y"] == pytest.approx(surv["survival"].to_list(), abs=1e-12)
    assert all(0.0 <= y <= 1.0 for y in line["y"])
    assert all(a >= b for a, b in zip(line["y"], line["y"][1:], strict=False))
    # the world has tasks that never settle: the curve stays above 0 (a backlog is not hidden)
    assert line["y"][-1] > 0.0


def test_walkthrough_notebook_charts_the_spend_per_day(
    store: Path, executed: dict[str, nbformat.NotebookNode]
) -> None:
    nb = executed["walkthrough.ipynb"]
    probe = _probe(nb)
    audit = asg_audit.analyze(store, as_of=datetime.fromisoformat(probe["as_of"]))

    spend = audit["spend_by_day"]
    assert spend.height > 1
    bars = _axes(probe, "spend")["bars"]
    assert [b["height"] for b in bars] == [float(c) for c in spend["cost_sats"]]
    assert [datetime.fromisoformat(b["x"]) for b in bars] == spend["period_start"].to_list()
    # the bars are sats, not task counts: they add up to the headline spend
    assert math.fsum(b["height"] for b in bars) == audit.summary()["known_cost_sats"]


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells[:-1]
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )


def _data_line(axes: dict[str, Any]) -> dict[str, Any]:
    """The one line of an axes that is not a reference line (the SLO)."""
    (line,) = [ln for ln in axes["lines"] if not ln["label"].startswith("SLO")]
    return line


def _assert_no_empty_axes(probe: dict[str, Any]) -> None:
    """Every axes drawn has data: bars, or a line beyond the reference lines (the SLO)."""
    for axes in probe["axes"]:
        data = [ln for ln in axes["lines"] if not ln["label"].startswith("SLO")]
        assert axes["bars"] or any(ln["x"] for ln in data), axes


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_on_an_empty_store_says_nothing_to_plot_and_draws_no_empty_axes(
    path: Path, executed_empty: dict[str, nbformat.NotebookNode]
) -> None:
    nb = executed_empty[path.name]
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    probe = _probe(nb)
    assert probe["axes"] == []
    assert not [o for o in outputs if "image/png" in o.get("data", {})]
    text = _stdout(nb)
    assert "nothing to plot" in text
    if path.name == "latency.ipynb":
        assert "No settled task with a known time to settle yet: nothing to plot" in text
    else:
        assert "No settled tasks with a known cost yet: nothing to plot (spend per day)." in text


def test_latency_notebook_on_one_settled_task_shows_its_one_point_curves(
    executed_one: dict[str, nbformat.NotebookNode],
) -> None:
    nb = executed_one["latency.ipynb"]
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    probe = _probe(nb)
    _assert_no_empty_axes(probe)
    ecdf = _data_line(_axes(probe, "ECDF"))
    assert (ecdf["x"], ecdf["y"]) == ([40.0], [1.0])
    surv = _data_line(_axes(probe, "unsettled"))
    assert (surv["x"], surv["y"]) == ([40.0], [0.0])
    # a one-point step draws no line: its point is marked, so the chart is not blank
    assert ecdf["marker"] not in ("None", "", " ") and surv["marker"] not in ("None", "", " ")
    assert "nothing to plot" not in _stdout(nb)
    assert "Not settled at 40 s, the oldest age seen: 0.00% of tasks" in _stdout(nb)


def test_walkthrough_notebook_on_one_settled_task_shows_its_one_bar(
    executed_one: dict[str, nbformat.NotebookNode],
) -> None:
    nb = executed_one["walkthrough.ipynb"]
    probe = _probe(nb)
    _assert_no_empty_axes(probe)
    assert [b["height"] for b in _axes(probe, "spend")["bars"]] == [975.0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_on_the_simulated_store_draws_no_empty_axes(
    path: Path, executed: dict[str, nbformat.NotebookNode]
) -> None:
    _assert_no_empty_axes(_probe(executed[path.name]))


@pytest.fixture(scope="module")
def executed_webhook_only(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, nbformat.NotebookNode]:
    """The notebooks on a store of one task known from a webhook delivery only: settled, of no
    stated cost, created when nobody knows."""
    delivery = {
        "event": "task.settled", "task_id": "tsk_hook", "consensus_label": "cat",
        "confidence": 1.0, "bsv_txid": "ab" * 32, "settled_at": "2026-10-01T12:00:00Z",
        "timestamp": "2026-10-01T12:00:01Z",
    }  # fmt: skip
    return _execute(_small_store(tmp_path_factory.mktemp("nb_hook"), [json.dumps(delivery)]))


def test_notebooks_on_a_settled_task_of_no_known_cost_or_latency_say_so(
    executed_webhook_only: dict[str, nbformat.NotebookNode],
) -> None:
    # tester T10: "No settled tasks yet" beside settled: 1, and a spend chart of one 0-sats bar
    latency = _stdout(executed_webhook_only["latency.ipynb"])
    assert "No settled task with a known time to settle yet: nothing to plot" in latency
    walkthrough = executed_webhook_only["walkthrough.ipynb"]
    assert "No settled tasks with a known cost yet: nothing to plot (spend per day)." in _stdout(
        walkthrough
    )
    assert not [a for a in _probe(walkthrough)["axes"] if "spend" in a["title"].lower()]
