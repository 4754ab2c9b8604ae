"""The Architecture tab with several models: one column each on one colour scale, reset zoom and a
gentle wheel, and blocks opened to show what is inside them."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from fishspine.analysis.jobs import run_job  # noqa: E402
from fishspine.app.components.state import AppState  # noqa: E402
from fishspine.app.qt.views import base as view_base  # noqa: E402
from fishspine.app.qt.views.architecture import RESET_ZOOM_KEYS, ArchitectureView  # noqa: E402

from .test_app_architecture import Jobs, entry  # noqa: E402


def run_now(title, job, on_result):
    on_result(run_job(job()))


@pytest.fixture(scope="module")
def models():
    return {"sc": entry("sc", "scnet50"), "r50": entry("r50", "resnet50"), "f99": entry("f99", "fishnet99")}


@pytest.fixture
def view(qtbot, models):
    state = AppState()
    for label in ("sc", "r50"):
        state.add_model(models[label])
    v = ArchitectureView(state, run_now)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    v.refresh()
    assert v.has_content
    yield v
    for w in list(view_base._open_windows):
        w.close()


def test_one_column_per_loaded_model_in_the_model_lists_order(qtbot, view, models):
    assert [c.label for c in view.columns] == ["sc", "r50"]
    assert [c.graph.model for c in view.columns] == ["scnet50", "resnet50"]
    xs = [c.box.sceneBoundingRect().x() for c in view.columns]
    assert xs == sorted(xs) and len(set(xs)) == 2  # side by side, left to right
    view.state.add_model(models["f99"])
    assert [c.label for c in view.columns] == ["sc", "r50", "f99"]
    view.state.remove_model("r50")
    assert [c.label for c in view.columns] == ["sc", "f99"]
    assert view.columns[0].plot.getAxis("left").label.isVisible()  # the rows' axis is named once
    assert not view.columns[1].plot.getAxis("left").label.isVisible()


def test_every_column_is_coloured_on_one_scale(qtbot, view, models):
    view.state.add_model(models["f99"])
    view.color_box.setCurrentText("macs")
    per_column = [[n.macs for n in c.graph.nodes if n.macs > 0] for c in view.columns]
    lo, hi = min(min(v) for v in per_column), max(max(v) for v in per_column)
    assert view.color_span == pytest.approx((math.log10(lo), math.log10(hi)))
    assert all(c.span == view.color_span for c in view.columns)  # the same vmin/vmax in every column
    assert view.colorbar.levels() == pytest.approx(view.color_span)  # and one colour bar says it
    # The scale is not any one column's own: some column's range is narrower than the shared one.
    assert any(min(v) > lo or max(v) < hi for v in per_column)
    # One number, one colour, whatever the column: a block of equal MACs in SCNet and ResNet.
    sc, res = view.columns[0], view.columns[1]
    by_macs = {n.macs: i for i, n in enumerate(res.graph.nodes)}
    pairs = [(i, by_macs[n.macs]) for i, n in enumerate(sc.graph.nodes) if n.macs in by_macs]
    assert pairs  # the stems are the same convolution
    for i, j in pairs:
        assert sc.nodes.data["brush"][i].color().name() == res.nodes.data["brush"][j].color().name()
    view.color_box.setCurrentText("role")
    assert view.color_span is None and all(c.span is None for c in view.columns) and not view._colorbar_shown


def test_reset_zoom_restores_the_first_view_of_every_column(qtbot, view):
    first = [np.array(c.box.viewRange()) for c in view.columns]
    for c in view.columns:
        c.box.scaleBy((0.3, 0.3))
        c.box.translateBy(x=1.5, y=0.5)
    assert not any(np.allclose(np.array(c.box.viewRange()), r) for c, r in zip(view.columns, first))
    qtbot.mouseClick(view.reset_button, Qt.LeftButton)
    for c, r in zip(view.columns, first):
        assert np.allclose(np.array(c.box.viewRange()), r)
    assert view.reset_shortcut.key().toString() == RESET_ZOOM_KEYS
    view.columns[0].box.scaleBy((0.5, 0.5))
    view.reset_shortcut.activated.emit()
    assert np.allclose(np.array(view.columns[0].box.viewRange()), first[0])


class Wheel:
    """One wheel notch (120) at a point of a view box, as pyqtgraph's ViewBox.wheelEvent reads it."""

    def __init__(self, pos: QPointF) -> None:
        self._pos = pos

    def delta(self) -> int:
        return 120

    def pos(self) -> QPointF:
        return self._pos

    def accept(self) -> None:
        pass


def test_one_wheel_notch_zooms_gently(qtbot, view):
    box = view.columns[0].box
    before = np.diff(np.array(box.viewRange()), axis=1).ravel()
    box.wheelEvent(Wheel(box.boundingRect().center()))
    after = np.diff(np.array(box.viewRange()), axis=1).ravel()
    ratio = before / after
    assert np.all(ratio > 1.05) and np.all(ratio < 1.15)  # pyqtgraph's default is 1.35 a notch


def test_an_opened_scnet_block_shows_its_pooled_calibration_and_a_resnet_block_does_not(qtbot, view):
    view.open_block("layer1.1", "sc")
    view.open_block("layer1.1", "r50")
    sc, res = view.interior_windows[-2:]
    assert "sc · inside layer1.1" in sc.windowTitle() and "r50 · inside layer1.1" in res.windowTitle()
    assert "↓4" in sc.summary.text() and "avg_pool2d" in sc.summary.text() and "↑4" in sc.summary.text()
    assert "↓" not in res.summary.text() and "↑" not in res.summary.text()
    assert not sc.image.pixmap().isNull()
    written = sc.export(str(view.interior_windows[-2].interior.block))
    try:
        assert {p.suffix for p in written} == {".png", ".svg", ".pdf", ".csv", ".json"}
    finally:
        for p in written:
            p.unlink()


def test_a_double_click_opens_the_block_in_a_worker(qtbot, models):
    state = AppState()
    state.add_model(models["sc"])
    jobs = Jobs()
    v = ArchitectureView(state, jobs)
    qtbot.addWidget(v)
    v.resize(900, 700)
    v.show()
    v.refresh()
    qtbot.waitUntil(lambda: v.has_content, timeout=30_000)
    qtbot.waitExposed(v)
    pos = v.canvas.mapFromScene(v.scene_pos("layer2.1"))
    # What a mouse sends: press and release, then a press that Qt reports as a double click, and a
    # release (pyqtgraph delivers clicks on release; QTest's double click sends none).
    qtbot.mouseClick(v.canvas.viewport(), Qt.LeftButton, pos=pos)
    qtbot.mouseDClick(v.canvas.viewport(), Qt.LeftButton, pos=pos)
    qtbot.mouseRelease(v.canvas.viewport(), Qt.LeftButton, pos=pos)
    assert v.state.selected_block == "layer2.1"  # the first click selected it
    qtbot.waitUntil(lambda: bool(v.interior_windows or jobs.errors), timeout=30_000)
    assert not jobs.errors, (jobs.titles, jobs.errors)
    assert "inside layer2.1" in v.interior_windows[-1].windowTitle() and "inside layer2.1 of sc" in jobs.titles
    qtbot.waitUntil(lambda: not jobs.workers, timeout=30_000)
    for w in list(view_base._open_windows):
        w.close()


def test_all_columns_export_is_the_command_lines_side_by_side_figure(qtbot, view, models, tmp_path):
    """With "all columns", Export writes what `fishspine graph A B --color-by params` writes."""
    from fishspine.cli.main import main
    from fishspine.models.checkpoints import save_checkpoint

    files = [str(save_checkpoint(models[m].model, tmp_path / f"{m}.safetensors")) for m in ("sc", "r50")]
    assert main(["graph", *files, "--color-by", "params", "-o", str(tmp_path / "cli.svg")]) == 0
    view.color_box.setCurrentText("params")
    view.all_columns.setChecked(True)
    assert view.export(tmp_path / "app.svg")[0].read_bytes() == (tmp_path / "cli.svg").read_bytes()
    view.export(tmp_path / "app.csv")
    assert {line.split(",")[0] for line in (tmp_path / "app.csv").read_text().splitlines()[1:]} == {"sc", "r50"}
    view.all_columns.setChecked(False)  # the chosen model alone, as before
    assert view.export(tmp_path / "one.svg")[0].read_bytes() != (tmp_path / "cli.svg").read_bytes()


def test_segment_names_that_would_overlap_are_skipped_widest_first(qtbot, view):
    from .test_app_architecture import FixedMetrics

    column = view.columns[1]  # ResNet-50: stem, layer1..layer4
    column.label_metrics = FixedMetrics(char_px=0.01, line_px=1.0)
    assert column.place_band_names() == [b.label for b in column.graph.bands]  # all fit
    column.label_metrics = FixedMetrics(char_px=1e4, line_px=1.0)  # each name wider than the column
    widest = max(column.graph.bands, key=lambda b: b.x_end - b.x_start)
    assert column.place_band_names() == [widest.label]
