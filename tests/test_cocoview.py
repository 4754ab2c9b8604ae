"""Issue 11: the COCO table's AR columns and its bbox/segm switch, bar labels clear of the baseline's line,
gradient tick labels that never crowd, JSON without NaN, hover readouts that clear, and model colours that do
not depend on the order models were loaded in (app and figures alike)."""

from __future__ import annotations

import json
import math
import subprocess
import types

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QPainter  # noqa: E402

from fishspine.analysis.attribution.gradients import GradientTrace  # noqa: E402
from fishspine.analysis.coco.evaluation import evaluate  # noqa: E402
from fishspine.analysis.figures.attribution import gradient_trace_figure, gradients_export  # noqa: E402
from fishspine.analysis.figures.base import FAMILY_COLORS, OTHER_COLORS, family_of, model_colors  # noqa: E402
from fishspine.analysis.figures.coco import size_bars_figure  # noqa: E402
from fishspine.app.components.state import AppState, ModelEntry  # noqa: E402
from fishspine.app.qt.views.coco import AR_COLUMNS, COLUMNS, CocoView  # noqa: E402
from fishspine.app.qt.views.gradients import GradientView, log_tick_label  # noqa: E402
from tests.test_app_coco import DEMO, FISHSPINE, NAMES, Jobs, load, settle, table_rows  # noqa: E402


def _parse_constant(name: str):
    raise AssertionError(f"bare {name} in exported JSON")


def strict_json(text: str):
    """The JSON in `text`, refusing NaN and Infinity (JSON has neither)."""
    return json.loads(text, parse_constant=_parse_constant)


@pytest.fixture(scope="module")
def two_evals():
    return evaluate(DEMO["coco_gt"], {n: DEMO["coco_results"][n] for n in NAMES[:2]})


@pytest.fixture
def view(qtbot):
    state = AppState()
    v = CocoView(state, Jobs(state))
    v.jobs = v.run_job
    qtbot.addWidget(v)
    v.resize(1100, 800)
    v.show()
    return v


# ---------------------------------------------------------------- colours


def test_model_colours_follow_the_family_not_the_load_order():
    names = ["ResNet-50", "FishNet-150", "SCNet-50", "SpineNet-49", "ResNet-101", "resnext50_32x4d", "ours", "x"]
    first = model_colors(names)
    for order in (names[::-1], names[3:] + names[:3], sorted(names)):
        assert model_colors(order) == first
    for name, family in (("ResNet-50", "resnet"), ("FishNet-150", "fishnet"), ("SCNet-50", "scnet")):
        assert family_of(name) == family and first[name] in FAMILY_COLORS[family]
    assert family_of("SpineNet-49") == "spinenet" and family_of("resnext50_32x4d") == "resnet"
    assert first["ours"] in OTHER_COLORS and first["x"] in OTHER_COLORS
    assert len(set(first.values())) == len(names)  # shades within a family, no two models alike
    # ResNet-50 before ResNet-101 (natural order), whatever came first; a family given explicitly wins.
    assert first["ResNet-50"] == FAMILY_COLORS["resnet"][0]
    assert model_colors(["mine", "theirs"], {"mine": "fishnet"})["mine"] == FAMILY_COLORS["fishnet"][0]


def test_every_registered_family_has_a_hue():
    from fishspine.models import list_families

    assert set(list_families()) <= set(FAMILY_COLORS)


def _trace(name: str, lo: float, hi: float, n: int = 20) -> GradientTrace:
    v = [float(x) for x in np.logspace(lo, hi, n)]
    return GradientTrace(name, "feature_energy", None, [f"b{i}" for i in range(n)], ["stage"] * n, [2] * n, v, v)


def test_figures_colour_each_model_the_same_in_either_order(two_evals):
    a, b = NAMES[:2]

    def bar_colours(evals):
        ax = size_bars_figure(evals).axes[0]
        return {c.get_label(): c.patches[0].get_facecolor() for c in ax.containers if c.get_label() in evals}

    assert bar_colours(two_evals) == bar_colours({b: two_evals[b], a: two_evals[a]})
    traces = {"ResNet-50": _trace("ResNet-50", -2, 1), "ResNet-101": _trace("ResNet-101", -3, 1)}

    def line_colours(traces):
        ax = gradient_trace_figure(traces).axes[0]
        return {line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()}

    assert line_colours(traces) == line_colours(dict(reversed(traces.items())))
    assert line_colours(traces)["ResNet-50"] == FAMILY_COLORS["resnet"][0]


def test_the_app_colours_each_backbone_the_same_in_either_order(qtbot, view):
    colours = []
    for names in (NAMES[:2], NAMES[:2][::-1]):
        load(qtbot, view, names)
        t = view.table
        colours.append({t.item(i, 0).data(Qt.UserRole): t.item(i, 0).foreground().color().name() for i in range(2)})
        bars = [it for it in view.bars.getPlotItem().items if isinstance(it, pg.BarGraphItem)]
        assert {it.name().split(" (")[0]: pg.mkColor(it.opts["brush"]).name() for it in bars} == colours[-1]
    assert colours[0] == colours[1]
    assert colours[0]["ResNet-50"] == pg.mkColor(FAMILY_COLORS["resnet"][0]).name()


def test_the_gradient_view_colours_by_the_loaded_models_family(qtbot):
    state = AppState()
    view = GradientView(state)
    qtbot.addWidget(view)
    colours = []
    for labels in (["mine", "theirs"], ["theirs", "mine"]):
        family = {"mine": "spinenet", "theirs": "scnet"}
        state.models = [ModelEntry(n, None, n, family[n], 0, "", False) for n in labels]
        state.insights = {n: types.SimpleNamespace(trace=_trace(n, -2, 0)) for n in labels}
        view.refresh()
        colours.append({c.name().split(" (")[0]: c.opts["pen"].color().name() for c in view._curves})
    assert colours[0] == colours[1]
    assert colours[0]["mine"] == pg.mkColor(FAMILY_COLORS["spinenet"][0]).name()


# ---------------------------------------------------------------- AR columns, bbox / segm


def test_ar_columns_equal_the_command_lines_json(qtbot, view, tmp_path):
    args = [FISHSPINE, "coco", "--gt", DEMO["coco_gt"], "--baseline", "ResNet-50", "--bootstrap", "0"]
    args += [a for n in NAMES for a in ("--dt", f"{n}={DEMO['coco_results'][n]}")]
    res = subprocess.run([*args, "-o", str(tmp_path), "--formats", "svg"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    cli = {r["backbone"]: r for r in strict_json((tmp_path / "coco_bbox.json").read_text())["table"]}
    load(qtbot, view)
    assert [view.table.horizontalHeaderItem(j).text() for j in range(1, view.table.columnCount())] == list(COLUMNS)
    view.metrics.setCurrentText("AR")
    assert view.state.settings.coco_metrics == "AR"
    assert [view.table.horizontalHeaderItem(j).text() for j in range(1, view.table.columnCount())] == list(AR_COLUMNS)
    for name, cells in table_rows(view).items():
        for cell, c in zip(cells, AR_COLUMNS):
            r = cli[name]
            expected = f"{r[c]:.1f}" + (f"  ({r['Δ' + c]:+.1f})" if f"Δ{c}" in r else "")
            assert cell == expected, (name, c)
    view.metrics.setCurrentText("AP")
    assert [view.table.horizontalHeaderItem(j).text() for j in range(1, view.table.columnCount())] == list(COLUMNS)


def test_segm_without_masks_in_the_results_says_so_and_keeps_the_boxes(qtbot, view):
    load(qtbot, view, NAMES[:2])
    shown = table_rows(view)
    view.iou_type.setCurrentText("segm")
    warnings = [t for level, t in view.state.messages if level == "warning"]
    assert any("no mask (segm) evaluation" in t and "segmentation" in t for t in warnings), warnings
    assert not [t for level, t in view.state.messages if level == "error"]
    assert view.state.settings.coco_iou_type == "bbox" and view.iou_type.currentText() == "bbox"
    assert table_rows(view) == shown and view.info.text().startswith("bbox")
    assert "not available" in view.iou_type.toolTip()


def test_segm_with_masks_shows_the_mask_evaluation(qtbot, view, tmp_path):
    results = {}
    for n in NAMES[:2]:
        dets = json.loads(open(DEMO["coco_results"][n]).read())
        for d in dets:  # each box as a polygon mask: a real segm evaluation of these detections
            x, y, w, h = d["bbox"]
            d["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        results[n] = str(tmp_path / f"{n}.json")
        (tmp_path / f"{n}.json").write_text(json.dumps(dets))
    view.state.update_settings(coco_gt=DEMO["coco_gt"], coco_baseline=NAMES[0], coco_results=dict(results))
    view.evaluate()
    settle(qtbot, view)
    view.iou_type.setCurrentText("segm")
    assert view.state.settings.coco_iou_type == "segm" and view.iou() == "segm"
    segm = evaluate(DEMO["coco_gt"], results, "segm")
    ap = {n: f"{100 * ev.average_precision():.1f}" for n, ev in segm.items()}
    assert {n: cells[0].split()[0] for n, cells in table_rows(view).items()} == ap
    assert view.info.text().startswith("segm")
    t = view.table  # the evidence is of boxes: a click on an AP cell in segm says so instead of doing nothing
    col = next(j for j in range(t.columnCount()) if t.horizontalHeaderItem(j).text() == "AP")
    view.open_evidence(1, col)
    assert "switch the table to bbox" in view.state.messages[-1][1] and view.evidence_panel.request is None
    view.iou_type.setCurrentText("bbox")
    box = evaluate(DEMO["coco_gt"], results, "bbox")
    assert {n: cells[0].split()[0] for n, cells in table_rows(view).items()} == {
        n: f"{100 * ev.average_precision():.1f}" for n, ev in box.items()
    }


# ---------------------------------------------------------------- labels clear of the baseline's line


def test_figure_bar_labels_are_never_struck_by_the_baseline_line(two_evals):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    evals = evaluate(DEMO["coco_gt"], DEMO["coco_results"])
    for base in NAMES:
        fig = size_bars_figure(evals, base)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        ax = fig.axes[0]
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(lines) == 3  # the baseline's level across each size group
        labels = [t for t in ax.texts if t.get_text()]
        assert len(labels) == 3 * len(NAMES)
        for line in lines:
            (x0, y), (x1, _) = ax.transData.transform(np.column_stack(line.get_data()))
            for t in labels:
                box = t.get_window_extent(canvas.get_renderer())
                if box.x1 > x0 and box.x0 < x1:  # over this group
                    assert not box.y0 <= y <= box.y1, (base, t.get_text())


def test_app_bar_labels_are_never_struck_by_the_baseline_line(qtbot, view):
    load(qtbot, view)
    qtbot.waitUntil(lambda: view.bars.getViewBox().sceneBoundingRect().height() > 200)
    box = view.bars.getViewBox()
    for base in NAMES[:2]:
        view.baseline.setCurrentText(base)
        for height in (800, 520):  # a resize re-places them
            view.resize(1100, height)
            qtbot.waitUntil(lambda: abs(box.viewPixelSize()[1] * box.height() - box.viewRange()[1][1]) < 1e-6)
            labels = [it for it in view.bars.getPlotItem().items if isinstance(it, pg.TextItem)]
            for text, x, _v, group in view._bar_labels:
                level = view._base_levels[group]
                line_y = box.mapViewToScene(QPointF(x, level)).y()
                rect = text.mapRectToScene(text.boundingRect())
                assert not rect.top() <= line_y <= rect.bottom(), (base, text.textItem.toPlainText())
            assert len(labels) == 3 * len(NAMES)


# ---------------------------------------------------------------- gradient tick labels, JSON without NaN


def _tick_labels(view) -> list:
    axis = view.plot.getAxis("left")
    image = QImage(10, 10, QImage.Format_ARGB32)
    painter = QPainter(image)
    try:
        _, _, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(text, rect) for rect, _, text in texts if text]


RANGES = [(-1.9, -1.1), (-2.5, -1.0), (-12.0, -10.5), (-3.0, 0.0), (-40.0, 5.0), (-300.0, 10.0)]
SUPERSCRIPT_DIGITS = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")


def label_value(text: str) -> float:
    """The number a tick label names: '0.02', '300', '10⁻⁶', '2·10⁻⁶'."""
    if not text.isascii():
        head, _, exponent = text.partition("10")
        return float(head.rstrip("·") or 1) * 10.0 ** int(exponent.translate(SUPERSCRIPT_DIGITS))
    return float(text)


@pytest.mark.parametrize("lo,hi", RANGES)
@pytest.mark.parametrize("height", [260, 600])
def test_gradient_tick_labels_never_overlap_and_name_their_value(qtbot, lo, hi, height):
    state = AppState()
    view = GradientView(state)
    qtbot.addWidget(view)
    view.resize(800, height)
    view.show()
    state.insights = {"ResNet-50": types.SimpleNamespace(trace=_trace("ResNet-50", lo, hi))}
    view.refresh()
    box = view.plot.getViewBox()
    box.updateAutoRange()
    y0, y1 = box.viewRange()[1]
    labels = _tick_labels(view)
    assert len(labels) >= 2
    for i, (a, ra) in enumerate(labels):
        for b, rb in labels[i + 1 :]:
            assert not ra.intersects(rb), (a, b)
    for text, _ in labels:  # the label names a value inside the axis's range (no SI rescaling)
        assert y0 - 1e-6 <= math.log10(label_value(text)) <= y1 + 1e-6, text


def test_log_tick_label():
    assert [log_tick_label(v) for v in (-2, math.log10(0.03), 0, 3, 4, -6, math.log10(2e-6))] == [
        "0.01", "0.03", "1", "1000", "10⁴", "10⁻⁶", "2·10⁻⁶"
    ]  # fmt: skip


def test_gradient_figure_tick_labels_never_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for lo, hi in RANGES:
        fig = gradient_trace_figure({"ResNet-50": _trace("ResNet-50", lo, hi)})
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        ax = fig.axes[0]
        r = canvas.get_renderer()
        lo_px, hi_px = ax.get_window_extent(r).y0, ax.get_window_extent(r).y1
        shown = [t for t in ax.yaxis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
        boxes = [t.get_window_extent(r) for t in shown]
        boxes = [b for b in boxes if b.y1 >= lo_px - 1 and b.y0 <= hi_px + 1]  # the ticks on the axis
        assert boxes
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (lo, hi)


def test_gradient_and_coco_json_never_hold_a_bare_nan(tmp_path, two_evals):
    trace = _trace("ResNet-50", -2, 0)
    trace.weight_grad_norm = [math.nan] + trace.weight_grad_norm[1:]  # a block without weights
    trace.output_grad_norm = [0.0] + trace.output_grad_norm[1:]  # 0 at the deepest block: an infinite ratio
    written = gradients_export(["img"], 224, {"ResNet-50": trace}).write(tmp_path / "g", formats=())
    data = strict_json((tmp_path / "g.json").read_text())
    assert data["models"]["ResNet-50"]["ratio"] is None
    assert data["models"]["ResNet-50"]["blocks"][0]["weight_grad_norm"] is None
    assert len(written) == 2
    # The command's COCO JSON where a size range holds no object (AP_S undefined).
    args = [FISHSPINE, "coco", "--gt", DEMO["coco_gt"], "--area-ranges", "0.5", "1", "--bootstrap", "0"]
    args += [a for n in NAMES[:2] for a in ("--dt", f"{n}={DEMO['coco_results'][n]}")]
    res = subprocess.run([*args, "-o", str(tmp_path), "--formats", "svg"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    table = strict_json((tmp_path / "coco_bbox.json").read_text())["table"]
    assert table[0]["AP_S"] is None


def test_coco_view_json_export_never_holds_a_bare_nan(qtbot, view, tmp_path):
    load(qtbot, view, NAMES[:2])
    view.state.coco[NAMES[0]].precision[:] = -1  # nothing defined: every AP NaN
    view.refresh()
    out = view.export(tmp_path / "coco.json")[0]
    assert strict_json(out.read_text())["table"][0]["AP"] is None


# ---------------------------------------------------------------- hover readouts clear


def test_gradient_readout_clears_when_what_it_describes_changes(qtbot):
    from fishspine.app.components.state import ImageEntry

    state = AppState()
    view = GradientView(state)
    qtbot.addWidget(view)
    view.resize(800, 500)
    view.show()
    state.add_images([ImageEntry(n, "", np.zeros((4, 4, 3), np.uint8)) for n in "ab"])
    state.models = [ModelEntry("ResNet-50", None, "resnet50", "resnet", 0, "", False)]

    def hover() -> None:
        state.insights = {"ResNet-50": types.SimpleNamespace(trace=_trace("ResNet-50", -2, 0))}
        view.refresh()
        view.plot.getViewBox().updateAutoRange()
        qtbot.waitUntil(lambda: view.plot.getViewBox().sceneBoundingRect().height() > 100)
        m, b, d, v = view.points[3]
        view._hovered(view.plot.getViewBox().mapViewToScene(QPointF(d, math.log10(v))))
        assert f"{m} · {b}" in view.info.text()

    for change in (
        lambda: state.select_image(1),
        lambda: state.remove_model("ResNet-50"),
        lambda: state.update_settings(gradient_which="weight"),
    ):
        hover()
        change()
        assert view.info.text() == ""
        state.models = [ModelEntry("ResNet-50", None, "resnet50", "resnet", 0, "", False)]


def test_coco_readout_clears_when_what_it_describes_changes(qtbot, view):
    load(qtbot, view)
    qtbot.waitUntil(lambda: view.bars.getViewBox().sceneBoundingRect().height() > 100)
    box = view.bars.getViewBox()

    def hover() -> str:
        x, _, height, name, size, key = view._bar_spots[4]
        view._bars_hovered(box.mapViewToScene(QPointF(x, height / 2)))
        assert view.info.text().startswith(f"{name} · {size} objects")
        return view.info.text()

    for change in (
        lambda: view.baseline.setCurrentText("FishNet-150"),
        lambda: view.metrics.setCurrentText("AR"),
        lambda: (view.table.selectRow(3), view.remove_result()),
    ):
        before = hover()
        change()
        assert view.info.text() != before and " objects:" not in view.info.text()
