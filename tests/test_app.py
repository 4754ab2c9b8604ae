"""The desktop app driven offscreen with pytest-qt: open checkpoints, drop images, every view, exports,
bad files, sessions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fishspine.analysis.images import sample_image
from fishspine.models.checkpoints import save_checkpoint

from .conftest import tiny_model

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from fishspine.app.components.state import AppState, read_session  # noqa: E402
from fishspine.app.qt.window import VIEWS, MainWindow  # noqa: E402

FISHSPINE = str(Path(sys.executable).with_name("fishspine"))
VALID = {
    "png": lambda d: d[:4] == b"\x89PNG",
    "pdf": lambda d: d[:5] == b"%PDF-",
    "svg": lambda d: b"<svg" in d[:3000],
    "csv": lambda d: b"," in d.splitlines()[0],
    "json": lambda d: bool(json.loads(d)),
}


@pytest.fixture
def files(tmp_path):
    a = save_checkpoint(tiny_model("resnet50"), tmp_path / "r50.safetensors")
    b = save_checkpoint(tiny_model("fishnet99"), tmp_path / "f99.safetensors")
    img = tmp_path / "shapes.png"
    Image.fromarray(sample_image(96)).save(img)
    return a, b, img


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    w.state.update_settings(image_size=96)
    qtbot.addWidget(w)
    w.show()
    return w


def wait_idle(qtbot, w, timeout=120_000):
    qtbot.waitUntil(lambda: not w._workers and not w._pending_analysis.isActive(), timeout=timeout)


def open_and_analyse(qtbot, w, files):
    a, b, img = files
    w.open_paths([str(a), str(b), str(img)])
    qtbot.waitUntil(
        lambda: (
            len(w.state.models) == 2
            and bool(w.state.insights)
            and set(w.state.insights) == {m.label for m in w.state.models}
        ),
        timeout=120_000,
    )
    wait_idle(qtbot, w)


def test_open_two_checkpoints_and_an_image_fills_every_view(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    assert {m.variant for m in window.state.models} == {"resnet50", "fishnet99"}
    assert window.model_list.count() == 2 and window.image_list.count() == 1
    acts = window.state.insights["r50"].activations
    assert len(acts.blocks) == 17 and acts.blocks[0].map.shape == (96, 96)
    for name in VIEWS[:-1]:
        window.show_view(name)
        view = window.views[name]
        qtbot.waitUntil(lambda v=view: v.has_content, timeout=60_000)
        for ext in ("png", "svg", "pdf", "csv", "json"):
            out = view.export(tmp_path / f"{name}.{ext}")[0]
            assert VALID[ext](out.read_bytes()), (name, ext)


def test_cli_and_app_export_the_same_figure(qtbot, window, files, tmp_path):
    """The Architecture tab's Export writes the bytes `fishspine graph` writes for the same checkpoint."""
    open_and_analyse(qtbot, window, files)
    window.show_view("architecture")
    view = window.views["architecture"]
    qtbot.waitUntil(lambda: view.has_content, timeout=60_000)
    shown = next(m for m in window.state.models if m.label == view.model_box.currentText())
    assert shown.source in {str(f) for f in files[:2]}
    for ext in ("svg", "png", "pdf"):  # the figure in each format, each time with the data beside it
        res = subprocess.run(
            [FISHSPINE, "graph", shown.source, "-o", str(tmp_path / f"cli.{ext}")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr
        for written in (ext, "csv", "json"):
            app = view.export(tmp_path / f"app.{written}")[0].read_bytes()
            assert app == (tmp_path / f"cli.{written}").read_bytes(), written


class _RunsCode:
    """Pickles as a call to os.system: loading it must never run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_bad_files_get_messages_and_state_survives(qtbot, window, files, tmp_path):
    import torch

    open_and_analyse(qtbot, window, files)
    n_models, n_images = len(window.state.models), len(window.state.images)
    insights = dict(window.state.insights)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "weights.pth").write_text("not weights")
    (tmp_path / "data.xyz").write_text("?")
    good = files[2].read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    Image.new("1", (12_000, 9_000)).save(tmp_path / "huge.png")
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _RunsCode(marker)}, tmp_path / "evil.pth")
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other_net.pth")
    (tmp_path / "broken.fishspine").write_text("{ not json")
    names = [
        "notes.png",
        "weights.pth",
        "data.xyz",
        "cut.png",
        "huge.png",
        "evil.pth",
        "other_net.pth",
        "broken.fishspine",
    ]
    window.open_paths([str(tmp_path / n) for n in names])
    wait_idle(qtbot, window)
    errors = [t for level, t in window.state.messages if level == "error"]
    text = "\n".join(errors)
    for name in names:  # every bad file is named in a message
        assert any(name in e for e in errors), name
    assert "not an image PIL can read" in text
    assert "not a checkpoint" in text
    assert "not an image, checkpoint or session file" in text
    assert "corrupt or truncated" in text
    assert "too large" in text
    assert "os.system" in text or "posix.system" in text  # names the code the pickle wanted to run
    assert not marker.exists()
    assert "not a fishspine session" in text
    assert len(window.state.models) == n_models and len(window.state.images) == n_images
    assert window.state.insights.keys() == insights.keys()
    assert window.isVisible()
    # messages are shown in the window, not in modal dialogs
    assert "too large" in window.messages.toPlainText()


def test_dropped_images_keep_their_order_and_a_bad_one_costs_only_itself(qtbot, window, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, seed in (("b.png", 1), ("a.png", 2)):
        Image.fromarray(sample_image(64, seed=seed)).save(folder / name)
    Image.fromarray(sample_image(80)).save(tmp_path / "z.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    window.open_paths([str(tmp_path / "z.png"), str(folder), str(tmp_path / "bad.png")])
    wait_idle(qtbot, window)
    assert [im.label for im in window.state.images] == ["z.png", "a.png", "b.png"]  # given order, folder sorted
    assert window.image_list.count() == 3 and window.image_list.currentRow() == 0
    assert window.state.image.label == "z.png"
    assert all(max(im.thumb.shape[:2]) == 96 for im in window.state.images)
    assert any("bad.png" in t for level, t in window.state.messages if level == "error")


def test_models_keep_the_order_they_were_opened_in(qtbot, window, files, monkeypatch):
    import threading

    import fishspine.app.qt.window as window_module

    real = window_module.load_model_source
    second_shown = threading.Event()
    window.state.models_changed.connect(
        lambda *_: second_shown.set() if any(m.label == "f99" for m in window.state.models) else None
    )

    def first_finishes_last(source, device):  # whatever the machine's speed, not a guess at a delay
        if "r50" in str(source) and not second_shown.wait(timeout=120):
            raise RuntimeError("f99 never appeared while r50 was loading: are loads no longer side by side?")
        return real(source, device)

    monkeypatch.setattr(window_module, "load_model_source", first_finishes_last)
    open_and_analyse(qtbot, window, files)
    assert second_shown.is_set()  # f99 was added first, r50 came later
    assert [m.label for m in window.state.models] == ["r50", "f99"]
    assert list(window.state.insights) == ["r50", "f99"]


def test_gpu_out_of_memory_falls_back_to_the_cpu_with_a_message(qtbot, window, files, monkeypatch):
    import torch

    import fishspine.analysis.attribution.engine as engine

    real = engine.run_pass
    calls = []

    def runs_out_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run_pass", runs_out_once)
    open_and_analyse(qtbot, window, files)
    warnings = [t for level, t in window.state.messages if level == "warning"]
    assert any("GPU ran out of memory" in t and "Tried to allocate 2.00 GiB" in t for t in warnings)
    assert window.device_box.currentText() == "cpu"
    assert all(m.device == "cpu" for m in window.state.models)
    assert len(calls) >= 3  # the failed pass, then a CPU pass of each model that produced the results


def test_session_round_trip(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    window.state.rename_model("r50", "ResNet-50 (mine)")
    window.state.update_settings(reduction="topk")
    second = tmp_path / "second.png"
    Image.fromarray(sample_image(64, seed=3)).save(second)
    window.open_paths([str(second)])
    wait_idle(qtbot, window)
    window.state.select_image(1)
    path = window.state.save_session(tmp_path / "s.fishspine")
    session, warnings = read_session(path)
    assert [m.label for m in session.models] == [m.label for m in window.state.models] and not warnings
    assert session.settings["reduction"] == "topk"
    other = MainWindow(AppState())
    qtbot.addWidget(other)
    other.open_session(path)
    qtbot.waitUntil(lambda: len(other.state.models) == 2 and len(other.state.images) == 2, timeout=60_000)
    wait_idle(qtbot, other)
    assert other.state.settings.reduction == "topk"
    # The columns come back in their order under the names the user gave them, on the image they looked at.
    assert [m.label for m in other.state.models] == [m.label for m in window.state.models]
    assert other.state.image.label == "second.png" and other.image_list.currentRow() == 1
    with pytest.raises(ValueError, match="not a fishspine session"):
        read_session(files[2])


def test_a_session_with_coco_files_evaluates_them_when_opened(qtbot, window, tmp_path):
    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dets = synthetic_coco(12, n_categories=3, dets_per_image=10, seed=0)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    for name, share in (("a", dets), ("b", dets[::2])):
        (tmp_path / f"{name}.json").write_text(json.dumps(share))
    window.state.update_settings(
        coco_gt=str(tmp_path / "gt.json"),
        coco_results={n: str(tmp_path / f"{n}.json") for n in "ab"},
        coco_baseline="b",
    )
    path = window.state.save_session(tmp_path / "coco.fishspine")
    other = MainWindow(AppState())
    qtbot.addWidget(other)
    other.open_session(path)
    qtbot.waitUntil(lambda: list(other.state.coco) == ["a", "b"], timeout=60_000)
    wait_idle(qtbot, other)
    assert other.views["coco"].base() == "b" and other.views["coco"].has_content


def test_model_columns_can_be_renamed_reordered_removed(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    labels = [m.label for m in window.state.models]
    window.state.move_model(labels[1], -1)
    assert [m.label for m in window.state.models] == labels[::-1]
    window.state.rename_model(labels[0], labels[1])  # taken: refused with a message
    assert "already called" in window.state.messages[-1][1]
    window.state.remove_model(labels[0])
    assert [m.label for m in window.state.models] == [labels[1]]


def test_selecting_a_block_drives_the_cam_and_lists_macs(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    assert all(m.macs > 0 for m in window.state.models)
    assert re.search(r"\d MACs|[kMGT]MACs", window.model_list.item(0).text())
    window.state.select_block("layer3.1")  # only the ResNet has it; FishNet keeps its default
    qtbot.waitUntil(
        lambda: window.state.insights.get("r50") is not None and window.state.insights["r50"].cam.block == "layer3.1",
        timeout=60_000,
    )
    wait_idle(qtbot, window)
    assert window.state.insights["f99"].cam.block == "score"


def test_demo_opens_on_trained_backbones_with_every_view_populated(qtbot, window):
    from fishspine.app.components.sources import DEMO_DIR

    assert (DEMO_DIR / "checkpoints").is_dir(), "the demo ships in assets/demo"
    window.open_demo()
    qtbot.waitUntil(
        lambda: len(window.state.models) == 4 and bool(window.state.coco) and len(window.state.insights) == 4,
        timeout=180_000,
    )
    wait_idle(qtbot, window)
    assert all(m.trained for m in window.state.models)
    assert {m.family for m in window.state.models} == {"resnet", "fishnet", "scnet", "spinenet"}
    assert set(window.state.coco) == {"ResNet-50", "FishNet-150", "SCNet-50", "SpineNet-49"}
    assert window.state.image is not None
    for name in VIEWS:
        window.show_view(name)
        qtbot.waitUntil(lambda n=name: window.views[n].has_content, timeout=60_000)


def test_a_block_picked_in_one_view_is_marked_in_every_view(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    gallery, gradients = window.views["activations"], window.views["gradients"]
    for name in ("activations", "gradients"):
        window.show_view(name)
        qtbot.waitUntil(lambda n=name: window.views[n].has_content, timeout=60_000)
    # Click a gallery cell of the ResNet: that block is selected everywhere...
    cell = next(
        c
        for c in gallery.grid.cells.values()
        if c.model == "r50" and c.block is not None and c.block.name.startswith("layer")
    )
    gallery.on_cell_clicked(cell)
    assert (window.state.selected_model, window.state.selected_block) == ("r50", cell.block.name)
    assert ringed(cell.box) and cell.box.border.color().name() == "#00b4ff"
    assert sum(ringed(c.box) for c in gallery.grid.cells.values()) == 1
    # ... ringed on the ResNet's gradient trace ...
    marked = gradients.selected.getData()
    assert len(marked[0]) == 1
    # ... and the CAM of every model that has that block is recomputed for it.
    qtbot.waitUntil(lambda: window.state.insights["r50"].cam.block == cell.block.name, timeout=60_000)
    wait_idle(qtbot, window)
    # Hover reads the block, its shape, and the map value under the mouse.
    centre = cell.box.mapViewToScene(cell.box.viewRect().center())
    gallery._hovered(centre)
    assert cell.block.name in gallery.info.text() and "map at" in gallery.info.text()
    # Hovering near a trace point names it.
    m, b, d, v = gradients.points[3]
    import math

    pos = gradients.plot.getViewBox().mapViewToScene(pg_point(d, math.log10(v)))
    gradients._hovered(pos)
    assert f"{m} · {b}" in gradients.info.text()


def ringed(box):
    from PySide6.QtCore import Qt

    return box.border.style() != Qt.PenStyle.NoPen


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_zooming_one_map_zooms_every_map(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    gallery = window.views["activations"]
    qtbot.waitUntil(lambda: gallery.has_content, timeout=60_000)
    boxes = [c.box for c in gallery.grid.cells.values()]
    assert len(boxes) >= 2 * 3  # input row + block rows, two model columns
    source = boxes[-1]
    source.scaleBy((0.25, 0.25))  # what a Ctrl+wheel zoom does, then pyqtgraph reports it:
    source.sigRangeChangedManually.emit(source.state["mouseEnabled"])
    (x0, x1), (y0, y1) = source.viewRange()
    scale = (y1 - y0) / source.height()  # image pixels per screen pixel
    assert (y1 - y0) < 40  # a quarter of the 96-pixel image
    for box in boxes:  # every box shows the same centre at the same magnification
        (a0, a1), (b0, b1) = box.viewRange()
        assert (a0 + a1) / 2 == pytest.approx((x0 + x1) / 2, abs=0.5)
        assert (b0 + b1) / 2 == pytest.approx((y0 + y1) / 2, abs=0.5)
        assert (b1 - b0) / box.height() == pytest.approx(scale, rel=0.02)


def test_coco_view_table_deltas_and_bad_json(qtbot, window, tmp_path):
    from fishspine.analysis.coco.evaluation import per_scale_table
    from fishspine.analysis.figures.base import figure_bytes
    from fishspine.analysis.figures.coco import size_bars_figure
    from fishspine.app.components.sources import demo_sources

    demo = demo_sources()
    view = window.views["coco"]
    window.show_view("coco")
    window.state.update_settings(coco_gt=demo["coco_gt"], coco_baseline="ResNet-50")
    view.add_result_files([demo["coco_results"][n] for n in ("ResNet-50", "FishNet-150")])
    qtbot.waitUntil(lambda: view.has_content, timeout=60_000)
    evals = window.state.coco
    rows = per_scale_table(evals, "ResNet-50", 1000, 0)  # the view's intervals: 1000 resamples, seed 0
    assert view.table.rowCount() == 2
    fish = next(i for i in range(2) if view.table.item(i, 0).text() == "FishNet-150")
    r = next(r for r in rows if r["backbone"] == "FishNet-150")
    half = (r["ΔAP_S_hi"] - r["ΔAP_S_lo"]) / 2
    assert view.table.item(fish, 4).text() == f"{r['AP_S']:.1f}  ({r['ΔAP_S']:+.1f} ±{half:.1f})"
    view.kind.setCurrentText("sizes")
    out = view.export(tmp_path / "sizes.svg")[0]
    assert out.read_bytes() == figure_bytes(size_bars_figure(evals, "ResNet-50", 1000, 0), "svg")
    view.baseline.setCurrentText("(none)")
    assert "(" not in view.table.item(fish, 4).text()
    # Bad files: a message each, and the evaluation on screen stays.
    (tmp_path / "gt.json").write_text("{ not json")
    (tmp_path / "dets.json").write_text('{"images": []}')
    window.state.update_settings(coco_gt=str(tmp_path / "gt.json"))
    view.evaluate()
    wait_idle(qtbot, window)
    window.state.update_settings(coco_gt=demo["coco_gt"])
    view.add_result_files([str(tmp_path / "dets.json")])
    wait_idle(qtbot, window)
    errors = [t for level, t in window.state.messages if level == "error"]
    assert any("gt.json" in e for e in errors) and any("dets.json" in e for e in errors), errors
    assert window.state.coco is evals and view.table.rowCount() == 2
