"""The desktop app driven offscreen with pytest-qt: open checkpoints, drop images, every view, exports,
bad files, sessions."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from fishspine.analysis.images import sample_image
from fishspine.models import create_model
from fishspine.models.checkpoints import save_checkpoint

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from fishspine.app.state import AppState, read_session  # noqa: E402
from fishspine.app.window import VIEWS, MainWindow  # noqa: E402


VALID = {"png": lambda d: d[:4] == b"\x89PNG", "pdf": lambda d: d[:5] == b"%PDF-",
         "svg": lambda d: b"<svg" in d[:3000], "csv": lambda d: b"," in d.splitlines()[0],
         "json": lambda d: bool(json.loads(d))}


@pytest.fixture
def files(tmp_path):
    a = save_checkpoint(create_model("resnet50", width=0.25, num_classes=5), tmp_path / "r50.safetensors")
    b = save_checkpoint(create_model("fishnet99", width=0.25, num_classes=5), tmp_path / "f99.safetensors")
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
    qtbot.waitUntil(lambda: len(w.state.models) == 2 and bool(w.state.insights) and
                    set(w.state.insights) == {m.label for m in w.state.models}, timeout=120_000)
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
        qtbot.waitUntil(lambda v=view: v.figure is not None, timeout=60_000)
        for ext in ("png", "svg", "pdf", "csv", "json"):
            out = view.export(tmp_path / f"{name}.{ext}")[0]
            assert VALID[ext](out.read_bytes()), (name, ext)


def test_cli_and_app_export_the_same_figure(qtbot, window, files, tmp_path):
    from fishspine.analysis.figures import figure_bytes
    from fishspine.analysis.graph import architecture_graph
    from fishspine.analysis.graph_figures import graph_figure

    open_and_analyse(qtbot, window, files)
    window.show_view("architecture")
    view = window.views["architecture"]
    qtbot.waitUntil(lambda: view.figure is not None, timeout=60_000)
    model = window.state.models[0].model if view.model_box.currentText() == window.state.models[0].label \
        else window.state.models[1].model
    expected = figure_bytes(graph_figure(architecture_graph(model, 224)), "svg")
    out = view.export(tmp_path / "arch.svg")[0]
    assert out.read_bytes() == expected


def test_bad_files_get_messages_and_state_survives(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    n_models, n_images = len(window.state.models), len(window.state.images)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "weights.pth").write_text("not weights")
    (tmp_path / "data.xyz").write_text("?")
    window.open_paths([str(tmp_path / "notes.png"), str(tmp_path / "weights.pth"), str(tmp_path / "data.xyz")])
    wait_idle(qtbot, window)
    text = "\n".join(t for _, t in window.state.messages)
    assert "not an image PIL can read" in text
    assert "not a checkpoint" in text
    assert "not an image, checkpoint or session file" in text
    assert len(window.state.models) == n_models and len(window.state.images) == n_images
    assert window.isVisible()


def test_session_round_trip(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    window.state.rename_model("r50", "ResNet-50 (mine)")
    window.state.update_settings(reduction="topk")
    path = window.state.save_session(tmp_path / "s.fishspine")
    data = read_session(path)
    assert [m["label"] for m in data["models"]] == [m.label for m in window.state.models]
    assert data["settings"]["reduction"] == "topk"
    other = MainWindow(AppState())
    qtbot.addWidget(other)
    other.open_session(path)
    qtbot.waitUntil(lambda: len(other.state.models) == 2 and len(other.state.images) == 1, timeout=60_000)
    wait_idle(qtbot, other)
    assert other.state.settings.reduction == "topk"
    with pytest.raises(ValueError, match="not a fishspine session"):
        read_session(files[2])


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
    assert "GMACs" in window.model_list.item(0).text()
    window.state.select_block("layer3.1")  # only the ResNet has it; FishNet keeps its default
    qtbot.waitUntil(lambda: window.state.insights.get("r50") is not None
                    and window.state.insights["r50"].cam.block == "layer3.1", timeout=60_000)
    wait_idle(qtbot, window)
    assert window.state.insights["f99"].cam.block == "score"


def test_demo_opens_on_trained_backbones_with_every_view_populated(qtbot, window):
    from fishspine.app.sources import DEMO_DIR

    assert (DEMO_DIR / "checkpoints").is_dir(), "the demo ships in assets/demo"
    window.open_demo()
    qtbot.waitUntil(lambda: len(window.state.models) == 4 and bool(window.state.coco)
                    and len(window.state.insights) == 4, timeout=180_000)
    wait_idle(qtbot, window)
    assert all(m.trained for m in window.state.models)
    assert {m.family for m in window.state.models} == {"resnet", "fishnet", "scnet", "spinenet"}
    assert set(window.state.coco) == {"ResNet-50", "FishNet-150", "SCNet-50", "SpineNet-49"}
    assert window.state.image is not None
    for name in VIEWS:
        window.show_view(name)
        qtbot.waitUntil(lambda n=name: window.views[n].figure is not None, timeout=60_000)
