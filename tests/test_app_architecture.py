"""The Architecture tab driven offscreen: the graph of the chosen model, hover, click to select,
selections from other views, colouring, names that follow the zoom, and exports equal to the CLI's figure."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from .conftest import tiny_model

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from fishspine.app.qt.views import base as view_base  # noqa: E402
from fishspine.app.qt.views.architecture import ArchitectureView  # noqa: E402
from fishspine.app.components.state import AppState, ModelEntry  # noqa: E402
from fishspine.app.qt.workers import GeneratorWorker, start  # noqa: E402


def entry(label: str, variant: str, width: float = 0.25) -> ModelEntry:
    # Training mode, as these models always were here: in eval mode an untrained FishNet's fresh
    # BatchNorm statistics leave logits in the thousands, the cross-entropy gradient underflows to
    # exactly 0 in every block, and the gradient colouring would have nothing to show.
    model = tiny_model(variant, width=width).train()
    return ModelEntry(label, model, variant, model.family, sum(p.numel() for p in model.parameters()),
                      f"zoo:{variant}:{width}", False)


class Jobs:
    """run_job as the window does it: generators in GeneratorWorkers, results on the UI thread."""

    def __init__(self) -> None:
        self.workers: set[GeneratorWorker] = set()
        self.titles: list[str] = []
        self.errors: list[str] = []

    def __call__(self, title, job, on_result):
        self.titles.append(title)
        worker = GeneratorWorker(job)
        self.workers.add(worker)
        worker.signals.finished.connect(lambda r, w=worker: (self.workers.discard(w), on_result(r)))
        worker.signals.failed.connect(lambda msg, w=worker: (self.workers.discard(w), self.errors.append(msg)))
        start(worker)
        return worker


@pytest.fixture(scope="module")
def models():
    return {"f99": entry("f99", "fishnet99"), "s49": entry("s49", "spinenet49")}


@pytest.fixture
def view(qtbot, models):
    state = AppState()
    jobs = Jobs()
    for e in models.values():
        state.add_model(e)
    v = ArchitectureView(state, jobs)
    v.jobs = jobs
    qtbot.addWidget(v)
    v.resize(1100, 800)
    v.show()
    v.refresh()
    qtbot.waitUntil(lambda: v.has_content, timeout=30_000)
    yield v
    qtbot.waitUntil(lambda: not jobs.workers, timeout=30_000)
    for w in list(view_base._open_windows):
        w.close()


def brushes(view: ArchitectureView) -> list[str]:
    return [b.color().name() for b in view.nodes.data["brush"]]


def test_the_chosen_models_graph_appears_and_follows_the_model_box(qtbot, view, models):
    assert view.model_box.count() == 2 and view.model_box.currentText() == "f99"
    assert view.stack.currentWidget() is view.canvas
    assert view.graph.model == "fishnet99" and view.graph.input_size == 224
    assert len(view.nodes.data) == len(models["f99"].model.blocks)
    x, y = view.nodes.getData()
    assert np.allclose(np.column_stack([x, y]), [view.graph.positions[n.name] for n in view.graph.nodes])
    n_points = sum(len(c.getData()[0]) for c in view.edge_curves.values() if c.getData()[0] is not None)
    assert n_points == len(view.graph.edges) * 24  # every route sampled, in one curve per edge kind

    view.model_box.setCurrentText("s49")  # not built yet: a job in a worker, then the display
    qtbot.waitUntil(lambda: view.has_content and view.graph.model == "spinenet49", timeout=30_000)
    assert view.graph.input_size == 640 and view.graph.layout == "scale-permuted"
    assert view.jobs.titles == ["architecture of f99", "architecture of s49"] and not view.jobs.errors
    assert "1/128 · 5²" in [t for _v, t in view.plot.getAxis("left")._tickLevels[0]]

    view.model_box.setCurrentText("f99")  # cached: shown at once, no new job
    assert view.graph.model == "fishnet99" and view.has_content and len(view.jobs.titles) == 2


def test_a_synchronous_run_job_shows_the_graph_at_once(qtbot, models):
    def run_now(title, job, on_result):
        *_, result = job()
        on_result(result)

    state = AppState()
    view = ArchitectureView(state, run_now)
    qtbot.addWidget(view)
    view.refresh()
    assert not view.has_content and "Waiting" in view.placeholder.text()
    state.add_model(models["s49"])
    view.refresh()
    assert view.has_content and view.graph.model == "spinenet49" and view.stack.currentWidget() is view.canvas


def test_a_graph_that_fails_to_build_says_so_and_is_tried_again(qtbot, models, monkeypatch):
    import fishspine.analysis.architecture.graph as graph_module

    real, calls = graph_module.architecture_graph, []

    def fails_once(model, size):
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("out of memory while tracing")
        return real(model, size)

    monkeypatch.setattr(graph_module, "architecture_graph", fails_once)

    def run_now(title, job, on_result):
        *_, result = job()
        on_result(result)

    state = AppState()
    view = ArchitectureView(state, run_now)
    qtbot.addWidget(view)
    state.add_model(models["s49"])
    view.refresh()
    assert not view.has_content and "could not be built" in view.placeholder.text()
    assert "out of memory while tracing" in view.placeholder.text()
    assert any(level == "error" and "s49" in text for level, text in state.messages)
    view.refresh()  # showing the tab again retries
    assert view.has_content and view.graph.model == "spinenet49" and len(calls) == 2


def test_renaming_a_model_keeps_its_graph(qtbot, view):
    view.state.add_model(entry("r50", "resnet50"))
    view.model_box.setCurrentText("r50")
    qtbot.waitUntil(lambda: view.has_content and view.graph.model == "resnet50", timeout=30_000)
    n_jobs = len(view.jobs.titles)
    view.state.rename_model("r50", "ResNet-50 (mine)")
    assert view.model_box.currentText() == "ResNet-50 (mine)"
    assert view.has_content and view.graph.model == "resnet50"
    assert len(view.jobs.titles) == n_jobs  # drawn again under its new name, not rebuilt


def test_model_list_changes_keep_the_choice(qtbot, view, models):
    view.model_box.setCurrentText("s49")
    qtbot.waitUntil(lambda: view.graph.model == "spinenet49", timeout=30_000)
    view.state.add_model(entry("r50", "resnet50"))
    assert [view.model_box.itemText(i) for i in range(3)] == ["f99", "s49", "r50"]
    assert view.model_box.currentText() == "s49" and view.graph.model == "spinenet49"
    view.state.remove_model("s49")
    assert view.model_box.currentText() == "f99"
    qtbot.waitUntil(lambda: view.has_content and view.graph.model == "fishnet99", timeout=30_000)
    view.state.remove_model("f99")
    view.state.remove_model("r50")
    assert not view.has_content and view.stack.currentIndex() == 0


def test_hover_names_the_block_under_the_mouse(qtbot, view):
    name = "head1.merge" if "head1.merge" in view.graph.positions else view.graph.nodes[-5].name
    node = view.graph.node(name)
    pos = view.canvas.mapFromScene(view.scene_pos(name))
    qtbot.mouseMove(view.canvas.viewport(), pos)
    qtbot.waitUntil(lambda: view.info.text().startswith(f"{name} · "), timeout=5_000)
    assert f"stride {2 ** node.level}" in view.info.text() and f"{node.channels} ch" in view.info.text()
    assert "M params" in view.info.text() and "GMACs" in view.info.text()
    # A hidden name is shown beside the hovered node.
    if view.label_mode == "groups":
        assert view.hover_label.isVisible() and view.hover_label.textItem.toPlainText() == name
    # Between the nodes nothing is hit.
    x, y = view.graph.positions[name]
    far = view.box.mapViewToScene(QPointF(x + 0.5, y + 0.5))
    assert view.node_at(far) is None
    view.hover(far)
    assert not view.hover_label.isVisible()


def test_click_selects_the_block_and_the_ring_follows_every_selection(qtbot, view):
    name = view.graph.nodes[7].name
    qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=view.canvas.mapFromScene(view.scene_pos(name)))
    assert (view.state.selected_block, view.state.selected_model) == (name, "f99")
    rx, ry = view.ring.getData()
    assert (rx[0], ry[0]) == view.graph.positions[name]

    other = view.graph.nodes[2].name
    view.state.select_block(other)  # picked in another view, for every model
    rx, ry = view.ring.getData()
    assert view.selected == other and (rx[0], ry[0]) == view.graph.positions[other]
    view.state.select_block(other, model="s49")  # picked in another model's column
    assert view.selected == "" and len(view.ring.getData()[0]) == 0
    view.state.select_block("no such block")
    assert len(view.ring.getData()[0]) == 0

    view.state.select_block(name, model="f99")  # the ring comes back after the model is switched away and back
    view.model_box.setCurrentText("s49")
    qtbot.waitUntil(lambda: view.graph.model == "spinenet49" and view.has_content, timeout=30_000)
    assert len(view.ring.getData()[0]) == 0
    view.model_box.setCurrentText("f99")
    assert view.selected == name


def test_colour_by_changes_only_the_node_brushes(qtbot, view, models):
    import torch

    from fishspine.analysis.images import sample_image, to_input
    from fishspine.analysis.attribution.interactive import analyse

    by_role = brushes(view)
    assert len(set(by_role)) == 4  # stem, tail, body, head
    for how in ("params", "macs"):
        view.color_box.setCurrentText(how)
        assert brushes(view) != by_role and view._colorbar_shown
        assert view.state.settings.graph_color_by == how
    by_macs = brushes(view)
    assert brushes(view) != by_role

    view.color_box.setCurrentText("gradient")  # nothing analysed yet: role colours, no colour bar
    assert brushes(view) == by_role and not view._colorbar_shown

    torch.manual_seed(0)
    insight = analyse(models["f99"].model, to_input(sample_image(64)), "f99")
    view.state.set_insights({"f99": insight})  # results arrive: recoloured by the gradient
    by_gradient = brushes(view)
    assert by_gradient not in (by_role, by_macs) and view._colorbar_shown
    assert "#ffffff" not in by_gradient[1:]  # every block but the stem has a gradient

    # With results, a click also opens the block's activation map.
    name = view.graph.nodes[10].name
    opened = len(view_base._open_windows)
    view.click_block(name)
    assert len(view_base._open_windows) == opened + 1
    assert name in view_base._open_windows[-1].windowTitle()

    view.color_box.setCurrentText("role")
    assert brushes(view) == by_role and not view._colorbar_shown


def test_names_follow_the_zoom(qtbot, view):
    assert view.label_mode == "groups"  # 39 FishNet-99 names do not fit side by side at the fitted size
    shown = [t for _g, t in view.group_labels if t is not None and t.isVisible()]
    assert len(shown) >= 5
    x, y = view.graph.positions["tail2.0"]
    # The aspect is locked, so zoom on both axes: four columns by two rows around one block.
    view.box.setRange(xRange=(x - 2, x + 2), yRange=(y - 1, y + 1), padding=0)
    qtbot.waitUntil(lambda: view.label_mode == "nodes", timeout=5_000)
    visible = [n for n, t in view.node_labels.items() if t.isVisible()]
    assert len(visible) == len(view.graph.nodes)
    assert not any(t.isVisible() for _g, t in view.group_labels if t is not None)


def test_exports_are_the_command_lines_figure(qtbot, view, models, tmp_path):
    from fishspine.analysis.figures.base import figure_bytes
    from fishspine.analysis.architecture.graph import architecture_graph
    from fishspine.analysis.figures.architecture import graph_figure

    model = models["f99"].model
    out = view.export(tmp_path / "arch.svg")[0]
    assert out.read_bytes() == figure_bytes(graph_figure(architecture_graph(model, 224)), "svg")
    for ext, ok in (("png", lambda d: d[:4] == b"\x89PNG"), ("pdf", lambda d: d[:5] == b"%PDF-")):
        assert ok(view.export(tmp_path / f"arch.{ext}")[0].read_bytes())
    csv_lines = view.export(tmp_path / "arch.csv")[0].read_text().splitlines()
    assert len(csv_lines) == 1 + len(model.blocks) and "parents" in csv_lines[0]
    data = json.loads(view.export(tmp_path / "arch.json")[0].read_text())
    assert data["model"] == "fishnet99" and len(data["nodes"]) == len(model.blocks)

    view.color_box.setCurrentText("params")
    graph = view.graph
    expected = graph_figure(graph, {n.name: float(n.params) for n in graph.nodes}, "params", log_values=True)
    assert view.export(tmp_path / "params.svg")[0].read_bytes() == figure_bytes(expected, "svg")


def test_spinenet190_builds_fast_enough_to_redraw(qtbot, view):
    view.state.add_model(entry("s190", "spinenet190", width=1.0))
    view.model_box.setCurrentText("s190")
    qtbot.waitUntil(lambda: view.has_content and view.graph.model == "spinenet190", timeout=60_000)
    first = view.build_seconds
    t = time.perf_counter()
    view.draw(view.graph, "s190")
    redraw = time.perf_counter() - t
    t = time.perf_counter()
    view.color_box.setCurrentText("macs")
    recolour = time.perf_counter() - t
    print(f"\nspinenet190 items: first build {first * 1e3:.1f} ms, redraw {redraw * 1e3:.1f} ms, "
          f"recolour {recolour * 1e3:.1f} ms")
    assert len(view.nodes.data) == len(view.graph.nodes)
