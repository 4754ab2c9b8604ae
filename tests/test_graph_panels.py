"""Several architecture diagrams in one figure (`fishspine graph A B ...`): one panel each, ONE colour scale."""

from __future__ import annotations

import csv
import json

import pytest

from fishspine.analysis.architecture.graph import architecture_graph
from fishspine.analysis.figures.architecture import graphs_figure

from .conftest import tiny_model


def test_panels_share_one_colour_scale():
    graphs = [architecture_graph(tiny_model(v), 64) for v in ("resnet50", "fishnet99")]
    values = [{n.name: float(n.macs) for n in g.nodes} for g in graphs]
    fig = graphs_figure(graphs, values, "MACs", log_values=True)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2
    coloured = [c for ax in panels for c in ax.collections if c.get_array() is not None]
    assert len(coloured) == 2  # one scatter of numbers per panel
    positive = [v for vals in values for v in vals.values() if v > 0]
    for c in coloured:
        assert (c.norm.vmin, c.norm.vmax) == pytest.approx((min(positive), max(positive)))
    # Not one panel's own range: the panels' ranges differ.
    own = [(min(v for v in vals.values() if v > 0), max(vals.values())) for vals in values]
    assert own[0] != own[1]


def test_graph_command_draws_several_models_side_by_side(tmp_path):
    from fishspine.cli.main import main

    assert main(["graph", "resnet50", "scnet50", "--color-by", "params", "-o", str(tmp_path / "two.svg")]) == 0
    rows = list(csv.DictReader((tmp_path / "two.csv").open()))
    assert {r["model"] for r in rows} == {"resnet50", "scnet50"}
    data = json.loads((tmp_path / "two.json").read_text())
    assert [m["name"] for m in data["models"]] == ["resnet50", "scnet50"]
    assert (tmp_path / "two.svg").read_text().count("one scale for every panel") == 1
    assert main(["graph", "resnet50", "scnet50", "--expand", "layer1.1", "-o", str(tmp_path / "x")]) != 0
