"""The Study tab driven offscreen with pytest-qt: a study folder opened (every plot drawn), a broken one
refused with the file named and the shown study kept, exports equal to the figures' own files, a study
run over two tiny models (and cancelled, then resumed), and the study folder carried by a session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fishspine.analysis.images import sample_image

from .conftest import tiny_model
from .study_fixture import write_synthetic_study

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtGui import QImage  # noqa: E402

from fishspine.analysis.figures.base import save_figure, write_csv, write_json  # noqa: E402
from fishspine.analysis.figures.study import load_study, study_exports  # noqa: E402
from fishspine.app.components.session import validate_session  # noqa: E402
from fishspine.app.components.state import AppState, ImageEntry, ModelEntry  # noqa: E402
from fishspine.app.qt.views.study import PLOTS, StudyView  # noqa: E402
from fishspine.app.qt.window import MainWindow  # noqa: E402
from fishspine.app.qt.workers import GeneratorWorker, start  # noqa: E402

KEPT: list = []  # every worker started by Jobs, for the life of the process


class Jobs:
    """run_job as the window does it, with on_end: the generator in a worker, its result on the UI thread."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.running: set[GeneratorWorker] = set()

    def __call__(self, title, job, on_result, on_end=None):
        worker = GeneratorWorker(job)
        self.running.add(worker)
        KEPT.append(worker)

        def ended(w=worker):
            self.running.discard(w)
            if on_end is not None:
                on_end()

        worker.signals.finished.connect(lambda r: (on_result(r), ended()))
        worker.signals.failed.connect(lambda msg: (self.state.notify("error", f"{title}: {msg}"), ended()))
        worker.signals.cancelled.connect(lambda: ended())
        start(worker)
        return worker


@pytest.fixture
def view(qtbot):
    state = AppState()
    v = StudyView(state, Jobs(state))
    qtbot.addWidget(v)
    v.resize(1000, 760)
    v.show()
    return v


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("study") / "three"
    write_synthetic_study(folder, models=3)
    return folder


def errors(state: AppState) -> list[str]:
    return [t for level, t in state.messages if level == "error"]


def drawn(view) -> bool:
    """The pane shows a rendered figure with something on it (not a blank page)."""
    pixmap = view.pane.pixmap()
    if pixmap is None or pixmap.isNull():
        return False
    img = pixmap.toImage().convertToFormat(QImage.Format_RGB888)
    w, h = img.width(), img.height()
    a = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(h, -1)[:, : 3 * w]
    return bool((a < 200).mean() > 0.005)


def test_opening_a_study_lists_every_plot_and_draws_each(qtbot, view, synthetic):
    assert not view.has_content and view.stack.currentIndex() == 0
    assert view.open_study(synthetic)
    items = [(view.plot.itemText(i), view.plot.itemData(i)) for i in range(view.plot.count())]
    assert items == [(text, name) for name, text in PLOTS.items()]  # all six, in the picker's order
    assert view.has_content and view.stack.currentIndex() == 1
    assert view.state.settings.study_folder == str(synthetic)
    summary = json.loads((synthetic / "summary.json").read_text())
    text = view.headline.text()
    for label, entry in summary["models"].items():
        assert label in text
        ratio = entry["traces"]["ratio"]["output"]["mean"]
        assert f"ratio (output) {ratio:.3g}" in text
        assert f"deletion AUC {entry['faithfulness']['deletion_auc']['mean']:.3g}" in text
        assert f"insertion AUC {entry['faithfulness']['insertion_auc']['mean']:.3g}" in text
    assert "50 images" in text and "64 px" in text and "world size 2" in text
    for i in range(view.plot.count()):
        before = view.pane.renders
        view.plot.setCurrentIndex(i)
        qtbot.waitUntil(lambda b=before: view.pane.renders > b and drawn(view), timeout=30_000)
        # the figure on screen has the exported figure's proportions
        w_in, h_in = view.pane.figure.get_size_inches()
        r = view.pane.rendered
        assert abs(r.width() / r.height() - w_in / h_in) < 0.02, view.plot.currentData()
    # refreshing (the window does on every analysis result) does not render again
    renders = view.pane.renders
    view.refresh()
    assert view.pane.renders == renders


def test_a_study_without_some_metrics_offers_only_its_plots(qtbot, view, tmp_path):
    write_synthetic_study(tmp_path / "s", models=2, metrics=("erf", "faithfulness"))
    assert view.open_study(tmp_path / "s")
    assert [view.plot.itemData(i) for i in range(view.plot.count())] == ["erf", "faithfulness"]
    assert "ratio" not in view.headline.text() and "deletion AUC" in view.headline.text()


@pytest.mark.parametrize(
    "breakage, named",
    [
        (lambda f: (f / "summary.json").unlink(), "summary.json"),
        (lambda f: (f / "summary.json").write_text("{not json"), "summary.json"),
        (lambda f: (f / "erf.npz").unlink(), "erf.npz"),
        (lambda f: (f / "cka.npz").write_bytes(b"PK\x03\x04 truncated"), "cka.npz"),
        (lambda f: shutil.rmtree(f), "broken"),
    ],
)
def test_a_broken_folder_leaves_the_view_as_it_was(qtbot, view, synthetic, tmp_path, breakage, named):
    assert view.open_study(synthetic)
    view.plot.setCurrentIndex(2)
    qtbot.waitUntil(lambda: drawn(view), timeout=30_000)
    shown, figure, renders = view.study, view.pane.figure, view.pane.renders
    broken = tmp_path / "broken"
    write_synthetic_study(broken, models=2)
    breakage(broken)
    assert not view.open_study(broken)
    message = errors(view.state)
    assert len(message) == 1 and named in message[0], message
    assert view.study is shown and view.pane.figure is figure and view.pane.renders == renders
    assert view.plot.count() == len(PLOTS) and view.plot.currentIndex() == 2 and view.has_content
    assert view.state.settings.study_folder == str(synthetic)


@pytest.mark.parametrize("name", list(PLOTS))
def test_export_equals_the_view_export_written_directly(view, synthetic, tmp_path, name):
    """Export writes what the command writes for that figure: the ViewExport's files, byte for byte."""
    assert view.open_study(synthetic)
    view.plot.setCurrentIndex(view.plot.findData(name))
    direct = study_exports(load_study(synthetic))[name]
    for ext in ("png", "svg", "csv", "json"):
        app = view.export(tmp_path / f"app.{ext}")[0].read_bytes()
        out = tmp_path / f"direct.{ext}"
        if ext == "csv":
            write_csv(out, direct.rows)
        elif ext == "json":
            write_json(out, direct.payload)
        else:
            save_figure(direct.figure(), out)
        assert app == out.read_bytes(), (name, ext)
    assert view.export_name() == f"{name}.pdf"


def test_export_equals_what_the_command_writes(view, synthetic, tmp_path):
    """`fishspine study` writes its figures from the study folder it made; the tab's Export of the same folder
    gives the same bytes (figures and data) for every plot."""
    import shutil

    from fishspine.cli.study import _write_figures

    folder = tmp_path / "study"
    shutil.copytree(synthetic, folder)
    _write_figures(folder, ["png", "svg"])
    assert view.open_study(folder)
    for name in PLOTS:
        view.plot.setCurrentIndex(view.plot.findData(name))
        for ext in ("png", "svg", "csv", "json"):
            app = view.export(tmp_path / f"app.{ext}")[0].read_bytes()
            assert app == (folder / f"{name}.{ext}").read_bytes(), (name, ext)


def test_session_carries_the_study_folder(qtbot, view, synthetic, tmp_path):
    session, warnings = validate_session({"fishspine_session": 1, "settings": {"study_folder": str(synthetic)}})
    assert session.settings == {"study_folder": str(synthetic)} and not warnings
    with pytest.raises(ValueError, match="study_folder"):
        validate_session({"fishspine_session": 1, "settings": {"study_folder": 5}})
    # A restored session's folder is opened; one that is not a study is refused and the shown one kept.
    view.state.update_settings(study_folder=str(synthetic))
    assert view.study is not None and view.study.folder == synthetic
    shown = view.study
    view.state.update_settings(study_folder=str(tmp_path / "gone"))
    assert view.study is shown and view.state.settings.study_folder == str(synthetic)
    assert "gone" in errors(view.state)[-1]
    assert view.state.session()["settings"]["study_folder"] == str(synthetic)


# ----------------------------------------------------------------------------- running a study


def model_entry(name: str, label: str, seed: int) -> ModelEntry:
    model = tiny_model(name, seed=seed)
    params = sum(p.numel() for p in model.parameters())
    return ModelEntry(label, model, name, model.family, params, f"zoo:{name}:0.25", False)


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    w.state.update_settings(image_size=64)
    qtbot.addWidget(w)
    w.show()
    w.show_view("study")
    return w


def add_inputs(window, tmp_path, images: int = 5) -> None:
    window.state.add_model(model_entry("resnet50", "r50", 0))
    window.state.add_model(model_entry("fishnet99", "f99", 1))
    entries = []
    for i in range(images):
        p = tmp_path / f"img{i}.png"
        pixels = sample_image(64, seed=i)
        Image.fromarray(pixels).save(p)
        entries.append(ImageEntry(p.name, str(p), pixels))
    window.state.add_images(entries)


def wait_idle(qtbot, w, timeout=120_000):
    qtbot.waitUntil(
        lambda: not w._workers and not w._pending_analysis.isActive() and not w._model_jobs, timeout=timeout
    )


def test_run_is_disabled_until_there_are_models_and_image_files(window, tmp_path):
    run = window.views["study"].run_button
    assert not run.isEnabled() and "load a model" in run.toolTip()
    window.state.add_model(model_entry("resnet50", "r50", 0))
    assert not run.isEnabled() and "add images" in run.toolTip()
    window.state.add_image(ImageEntry("sample (generated)", "", sample_image(64)))  # no file: not studied
    assert not run.isEnabled()
    p = tmp_path / "a.png"
    Image.fromarray(sample_image(64)).save(p)
    window.state.add_image(ImageEntry(p.name, str(p), sample_image(64)))
    assert run.isEnabled() and "1 models" in run.toolTip() and "64 px" in run.toolTip()


@pytest.mark.slow  # 15-35 s on a shared 2-core CPU, most of it the ERF backward passes
def test_running_a_study_over_two_tiny_models_writes_and_shows_it(qtbot, window, tmp_path):
    add_inputs(window, tmp_path, images=4)
    view = window.views["study"]
    view.batch.setValue(4)
    out = tmp_path / "out"
    qtbot.waitUntil(lambda: window._analysis_worker is not None, timeout=10_000)  # the models are busy
    analysis = window._analysis_worker
    view.run_study(out)
    assert not view.run_button.isEnabled() and "running" in view.run_button.toolTip()
    # The study waits for the analysis to stop, and no analysis starts beside it (they share .grad, hooks).
    qtbot.waitUntil(lambda: window._analysis_worker is None and bool(window._workers), timeout=30_000)
    assert analysis not in window._workers
    window.state.update_settings(reduction="topk")
    qtbot.waitUntil(lambda: not window._pending_analysis.isActive(), timeout=5_000)
    assert window._analysis_worker is None and view.running
    qtbot.waitUntil(lambda: view.study is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert not errors(window.state), window.state.messages
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["models"]) == ["r50", "f99"]
    assert summary["config"]["images"] == 4 and summary["config"]["size"] == 64 and summary["config"]["batch"] == 4
    assert summary["config"]["source"] == str(tmp_path.resolve())
    assert summary["cka"]["batches"] == 1
    assert view.study.folder == out and view.state.settings.study_folder == str(out)
    assert [view.plot.itemData(i) for i in range(view.plot.count())] == list(PLOTS)
    qtbot.waitUntil(lambda: drawn(view), timeout=30_000)
    assert "r50" in view.headline.text() and "4 images" in view.headline.text()
    assert view.run_button.isEnabled()
    # the analysis the study held back runs when it ends
    qtbot.waitUntil(lambda: set(window.state.insights) == {"r50", "f99"}, timeout=60_000)


@pytest.mark.slow  # as the test above
def test_a_cancelled_study_keeps_its_chunks_and_resumes(qtbot, window, tmp_path):
    add_inputs(window, tmp_path)
    view = window.views["study"]
    view.batch.setValue(4)
    out = tmp_path / "out"
    state_file = out / "state" / "rank0-of-1.npz"
    view.run_study(out)
    qtbot.waitUntil(lambda: state_file.exists(), timeout=60_000)
    window.cancel_jobs()  # stops after the first chunk, saved
    wait_idle(qtbot, window)
    assert view.study is None and not (out / "summary.json").exists()
    assert any("resumes it" in t for _, t in window.state.messages), window.state.messages
    assert view.run_button.isEnabled()
    view.run_study(out, resume=True)
    qtbot.waitUntil(lambda: view.study is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert not errors(window.state), window.state.messages
    assert view.study.summary["config"]["images"] == 5


def test_a_failing_study_is_a_message(qtbot, window, tmp_path):
    add_inputs(window, tmp_path, images=4)
    view = window.views["study"]
    out = tmp_path / "out"
    (out / "state").mkdir(parents=True)
    (out / "state" / "rank0-of-1.npz").write_bytes(b"not an npz")  # a resume that cannot read its state
    view.run_study(out, resume=True)
    wait_idle(qtbot, window)
    assert view.study is None and view.run_button.isEnabled()
    message = errors(window.state)
    assert len(message) == 1 and message[0].startswith("study:") and "rank0-of-1.npz" in message[0], message


def test_dropping_a_study_folder_opens_the_study_tab(qtbot, window, synthetic):
    window.show_view("activations")
    window.open_paths([str(synthetic)])
    assert window.current_view() is window.views["study"] and window.views["study"].has_content
    assert not window.state.images  # its figures are not images to analyse
    qtbot.waitUntil(lambda: drawn(window.views["study"]), timeout=30_000)
