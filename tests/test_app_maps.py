"""The activation and Grad-CAM views use the screen: equal panes that follow the window's size, the
enlarged map inside the window (the grid's colours, a colour bar and a histogram), the CAM's opacity
and block per model as saved settings, and classes named in the class box."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from .conftest import tiny_model

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtWidgets import QApplication  # noqa: E402

from fishspine.analysis.attribution.class_names import (  # noqa: E402
    NO_CLASSIFIER,
    class_label,
    class_names,
    classifier_classes,
)
from fishspine.app.components.state import ModelEntry  # noqa: E402
from fishspine.app.qt.views.base import lookup_table  # noqa: E402
from fishspine.app.qt.window import MainWindow  # noqa: E402

from .test_app import files, open_and_analyse, wait_idle, window  # noqa: E402, F401 - shared fixtures


def pane_sizes(view) -> set[tuple[int, int]]:
    return {(round(c.box.width()), round(c.box.height())) for c in view.grid.cells.values()}


def settled_panes(qtbot, view) -> tuple[int, int]:
    """The one size every pane has once the layout has followed the window."""
    want = view.grid.pane
    qtbot.waitUntil(lambda: pane_sizes(view) == {view.grid.pane} and view.grid.pane != (0, 0), timeout=10_000)
    assert view.grid.pane[0] >= want[0] or want == (0, 0)
    return view.grid.pane


def windows_shown() -> set:
    return {w for w in QApplication.topLevelWidgets() if w.isWindow() and w.isVisible()}


@pytest.mark.parametrize("name", ["activations", "cam"])
def test_every_pane_has_one_size_and_follows_the_window(qtbot, window, files, name):
    open_and_analyse(qtbot, window, files)
    window.show_view(name)
    view = window.views[name]
    qtbot.waitUntil(lambda: view.has_content, timeout=60_000)
    window.resize(1000, 700)
    small = settled_panes(qtbot, view)
    window.resize(1700, 1150)
    qtbot.waitUntil(lambda: view.grid.pane[0] > small[0], timeout=10_000)
    large = settled_panes(qtbot, view)
    assert large[0] > small[0] and large[1] > small[1], (small, large)
    assert len(pane_sizes(view)) == 1  # the CAM's panes once differed per model's title height
    if name == "cam":  # the panes fill the width: no more than a column's spacing is left unused
        used = view.grid.label_px + len(view.grid.cells) * large[0]
        viewport = view.scroll.viewport().width()
        assert used <= viewport and (viewport - used < 40 or view.grid.height() > view.scroll.viewport().height() - 70)


def test_clicking_a_map_enlarges_it_inside_the_window(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    window.show_view("activations")
    gallery = window.views["activations"]
    qtbot.waitUntil(lambda: gallery.has_content, timeout=60_000)
    before = windows_shown()
    cell = next(c for c in gallery.grid.cells.values() if c.model == "f99" and c.block is not None)
    gallery.on_cell_clicked(cell)
    panel = gallery.panel
    assert panel.isVisible() and panel.window() is window
    assert windows_shown() == before, "no window of its own"
    assert (panel.model, panel.block) == ("f99", cell.block.name) and cell.block.name in panel.title.text()
    cmap = window.state.insights["f99"].activations.cmap
    assert panel.cmap == cmap
    assert np.abs(panel.lookup().astype(int) - lookup_table(cmap)[:, :3].astype(int)).max() <= 1
    hx, hy = panel.hist.plot.getData()
    assert hx is not None and len(hx) > 2 and hy.sum() > 0, "a histogram of the map's values"
    assert panel.hist.axis.labelText and "colour bar" in panel.scale.text()
    lo, hi = panel.hist.getLevels()
    assert lo < hi
    # The CAM view's panel: the CAM in its colour map, the block it was taken at.
    window.state.update_settings(cam_cmap="viridis")
    window.show_view("cam")
    cams = window.views["cam"]
    qtbot.waitUntil(lambda: cams.has_content, timeout=60_000)
    cell = cams.grid.cells[(0, 1)]
    cams.on_cell_clicked(cell)
    assert cams.panel.isVisible() and windows_shown() == before
    assert (cams.panel.model, cams.panel.block) == (cell.model, cell.block.block)
    assert np.abs(cams.panel.lookup().astype(int) - lookup_table("viridis")[:, :3].astype(int)).max() <= 1


def test_the_overlay_opacity_is_a_saved_setting_the_export_uses(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    window.show_view("cam")
    view = window.views["cam"]
    qtbot.waitUntil(lambda: view.has_content, timeout=60_000)
    window.state.update_settings(cam_alpha=0.2)
    assert view.alpha.value() == 20 and view.grid.cells[(0, 1)].overlay.opacity() == pytest.approx(0.2)
    view.alpha.setValue(70)
    assert window.state.settings.cam_alpha == pytest.approx(0.7)
    assert view.export_result().payload["alpha"] == pytest.approx(0.7)
    path = window.state.save_session(tmp_path / "s.fishspine")
    fresh = MainWindow()
    qtbot.addWidget(fresh)
    fresh.open_session(path)
    assert fresh.state.settings.cam_alpha == pytest.approx(0.7) and fresh.views["cam"].alpha.value() == 70
    qtbot.waitUntil(lambda: len(fresh.state.models) == 2 and bool(fresh.state.insights), timeout=120_000)
    wait_idle(qtbot, fresh)
    fresh.close()


def choose(box, name: str) -> None:
    box.setCurrentIndex(box.findData(name))
    box.activated.emit(box.currentIndex())


def test_each_model_column_keeps_its_own_cam_block(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    window.show_view("cam")
    view = window.views["cam"]
    qtbot.waitUntil(lambda: view.has_content, timeout=60_000)
    assert set(view.block_boxes) == {"r50", "f99"}
    f99_block = next(b.name for b in window.state.models[1].model.blocks if b.name.startswith("body"))
    choose(view.block_boxes["r50"], "layer3.1")
    qtbot.waitUntil(lambda: window.state.insights["r50"].cam.block == "layer3.1", timeout=60_000)
    wait_idle(qtbot, window)
    choose(view.block_boxes["f99"], f99_block)
    qtbot.waitUntil(lambda: window.state.insights["f99"].cam.block == f99_block, timeout=60_000)
    wait_idle(qtbot, window)
    assert window.state.insights["r50"].cam.block == "layer3.1", "choosing for f99 kept r50's block"
    assert view.block_boxes["r50"].currentData() == "layer3.1" and view.block_boxes["f99"].currentData() == f99_block
    assert window.state.settings.cam_blocks == {"r50": "layer3.1", "f99": f99_block}
    shown = {c.model: c.block.block for c in view.grid.cells.values() if c.model}
    exported = {row["model"]: row["block"] for row in view.export_result().rows}
    assert shown == exported == {"r50": "layer3.1", "f99": f99_block}
    # A block picked in another view moves only the CAM of the model it was picked in.
    window.state.select_block("layer2.0", "r50")
    qtbot.waitUntil(lambda: window.state.insights["r50"].cam.block == "layer2.0", timeout=60_000)
    wait_idle(qtbot, window)
    assert window.state.insights["f99"].cam.block == f99_block
    # The column's choice follows its model's new name.
    window.state.rename_model("f99", "fish")
    assert window.state.settings.cam_blocks["fish"] == f99_block


def test_class_names_come_from_imagenet_a_detector_or_say_why_there_are_none():
    names = class_names(1000)
    assert len(names) == 1000 and class_label(281, names) == "class 281 · tabby"
    assert class_names(10) == () and class_label(3, class_names(10)) == "class 3"
    assert class_names(3, ["cat", "dog", "fish"]) == ("cat", "dog", "fish")
    assert class_label(None, (), has_classifier=False) == NO_CLASSIFIER
    assert classifier_classes(tiny_model("resnet50", num_classes=1000)) == 1000
    assert classifier_classes(tiny_model("spinenet49")) is None
    # The ImageNet list is read from torchvision when first asked for, never when the app starts.
    code = "import sys, fishspine.app.qt.window; print('torchvision.models._meta' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


def add(window, label: str, model) -> None:
    window.state.add_model(
        ModelEntry(label, model, "v", "resnet", sum(p.numel() for p in model.parameters()), f"zoo:{label}", False)
    )


def test_the_class_box_and_titles_name_the_class(qtbot, window, files):
    from fishspine.analysis.images import sample_image
    from fishspine.app.components.state import ImageEntry

    window.state.update_settings(image_size=64)
    add(window, "in1k", tiny_model("resnet50", num_classes=1000))
    window.state.add_image(ImageEntry("shapes", "", sample_image(64)))
    window.show_view("cam")
    view = window.views["cam"]
    qtbot.waitUntil(lambda: "in1k" in window.state.insights and view.has_content, timeout=60_000)
    wait_idle(qtbot, window)
    window.state.update_settings(class_index=281)
    qtbot.waitUntil(lambda: window.state.insights["in1k"].cam.class_index == 281, timeout=60_000)
    wait_idle(qtbot, window)
    view.refresh()
    assert view.klass.isEnabled() and view.klass.text() == "281 · tabby"
    assert "class 281 · tabby" in view.grid.headers[1].text
    # A backbone without a classifier alone: the box says why there is no class.
    window.state.update_settings(class_index=None)
    wait_idle(qtbot, window)
    add(window, "bare", tiny_model("spinenet49"))
    window.state.remove_model("in1k")
    qtbot.waitUntil(lambda: set(window.state.insights) == {"bare"}, timeout=60_000)
    wait_idle(qtbot, window)
    view.refresh()
    assert not view.klass.isEnabled() and view.klass.text() == NO_CLASSIFIER
    assert "no classifier" in view.grid.headers[1].text and NO_CLASSIFIER in view.describe(
        view.grid.cells[(0, 1)], -1, -1
    )


def test_the_enlarged_map_follows_new_results(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    window.show_view("activations")
    gallery = window.views["activations"]
    qtbot.waitUntil(lambda: gallery.has_content, timeout=60_000)
    cell = next(c for c in gallery.grid.cells.values() if c.model == "r50" and c.block is not None)
    gallery.on_cell_clicked(cell)
    first = gallery.panel.image.image.copy()
    window.state.update_settings(reduction="max")
    qtbot.waitUntil(lambda: window.state.insights["r50"].activations.reduction == "max", timeout=60_000)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: "max" in gallery.panel.hist.axis.labelText.lower(), timeout=10_000)
    assert gallery.panel.block == cell.block.name and not np.array_equal(gallery.panel.image.image, first)


def test_a_detectors_backbone_names_what_its_detector_detects(window):
    from types import SimpleNamespace

    from fishspine.models.detector import DetectorSpec

    model = tiny_model("spinenet49")
    entry = ModelEntry("det", model, "spinenet49", "spinenet", 1, "det.safetensors", True)
    entry.detector_spec = DetectorSpec(4, 128, 64, [1, 2, 3, 4], ["circle", "square", "star", "triangle"])
    window.state.add_model(entry)
    text = window.views["cam"]._target_text("det", SimpleNamespace(class_index=None))
    assert text.startswith(NO_CLASSIFIER) and "detector of 4: circle, square, star …" in text


def test_the_focus_object_is_outlined_in_every_pane_and_the_export(qtbot, window, files, tmp_path):
    """An object chosen in the COCO evidence (ImageEntry.focus, the image's pixels) is outlined over
    every map and CAM at the size shown, and the CAM export draws the same box."""
    import json

    open_and_analyse(qtbot, window, files)
    entry = window.state.image
    h, w = entry.pixels.shape[:2]
    window.state.focus_on(window.state.selected_image, (w * 0.25, h * 0.5, w * 0.75, h), "square")
    for name in ("activations", "cam"):
        window.show_view(name)
        view = window.views[name]
        qtbot.waitUntil(lambda v=view: v.has_content, timeout=60_000)
        shown = view.shown_image().shape
        outlines = [c.focus for c in view.grid.cells.values() if c.focus is not None and c.focus.isVisible()]
        assert len(outlines) == len(view.grid.cells)
        rect = outlines[0].rect()
        assert (rect.left(), rect.top()) == pytest.approx((shown[1] * 0.25, shown[0] * 0.5), abs=1e-6)
        assert (rect.width(), rect.height()) == pytest.approx((shown[1] * 0.5, shown[0] * 0.5), abs=1e-6)
    (out,) = window.views["cam"].export(tmp_path / "cam.json")
    assert json.loads(out.read_text())["asked_box_xyxy"] == pytest.approx(
        [shown[1] * 0.25, shown[0] * 0.5, shown[1] * 0.75, shown[0]], abs=0.01
    )
    window.state.focus_on(window.state.selected_image, None)  # no object: no outline
    assert not any(c.focus.isVisible() for c in window.views["cam"].grid.cells.values() if c.focus is not None)
