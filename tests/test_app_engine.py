"""The app on the one engine: settings re-derive without a pass, controls follow the state, and an export
equals the command line's output for the same settings."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from fishspine.app.qt.window import MainWindow  # noqa: E402

from .test_app import files, open_and_analyse, wait_idle, window  # noqa: E402, F401 - shared fixtures


def test_settings_that_need_no_pass_reach_the_views_without_one(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    engine, state = window.engine, window.state
    ran = engine.passes_run
    first = state.insights["r50"]
    for change in (
        {"reduction": "pca"},
        {"normalisation": "global"},
        {"cam_method": "layercam"},
        {"gradient_which": "weight"},
        {"reduction": "max"},
    ):
        state.update_settings(**change)
        wait_idle(qtbot, window)
    state.select_block("layer2.0")
    wait_idle(qtbot, window)
    assert engine.passes_run == ran, "reduction, normalisation, CAM method, block: derived from the cache"
    now = state.insights["r50"]
    assert now is not first and now.activations.reduction == "max" and now.activations.normalisation == "global"
    assert now.cam.method == "layercam" and now.cam.block == "layer2.0"
    state.update_settings(image_size=128)  # a new input size is a new pass
    wait_idle(qtbot, window)
    assert engine.passes_run == ran + 2
    assert state.insights["r50"].activations.image_size == (128, 128)


def test_removing_a_model_frees_its_passes(qtbot, window, files):
    open_and_analyse(qtbot, window, files)
    held = len(window.engine)
    window.state.remove_model("f99")
    wait_idle(qtbot, window)
    assert len(window.engine) == held - 1 and list(window.state.insights) == ["r50"]


def test_a_restored_session_sets_every_control(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    window.state.update_settings(
        gradient_which="weight",
        reduction="topk",
        normalisation="model",
        image_size=160,
        cam_method="gradcampp",
        gallery_rows=5,
        class_index=3,
        scaling="minmax",
        cam_cmap="jet",
    )
    path = window.state.save_session(tmp_path / "s.fishspine")
    fresh = MainWindow()
    qtbot.addWidget(fresh)
    fresh.open_session(path)
    assert fresh.views["gradients"].which.currentText() == "weight"
    assert fresh.reduction_box.currentText() == "topk" and fresh.norm_box.currentText() == "model"
    assert fresh.size_box.value() == 160 and fresh.views["activations"].rows_box.value() == 5
    assert fresh.views["cam"].method.currentText() == "gradcampp" and fresh.views["cam"].klass.value() == 3
    assert fresh.views["activations"].scaling_box.currentText() == "minmax"
    assert fresh.views["cam"].scaling_box.currentText() == "minmax"
    assert fresh.views["cam"].cmap_box.currentText() == "jet"
    qtbot.waitUntil(lambda: len(fresh.state.models) == 2 and bool(fresh.state.insights), timeout=120_000)
    wait_idle(qtbot, fresh)
    fresh.close()


def test_a_control_follows_a_change_made_elsewhere(qtbot, window):
    window.state.update_settings(device="cpu", precision="bf16")
    assert window.device_box.currentText() == "cpu" and window.precision_box.currentText() == "bf16"
    window.state.settings.gradient_which = "weight"  # a plain assignment is an event too
    assert window.views["gradients"].which.currentText() == "weight"


@pytest.mark.parametrize(
    "view, command, stem",
    [
        ("gradients", "gradients", "gradient_trace"),
        ("activations", "activations", "shapes_activations"),
        ("cam", "cam", "shapes_gradcam"),
    ],
)
def test_the_app_exports_what_the_command_line_writes(qtbot, window, files, tmp_path, view, command, stem):
    from fishspine.cli.main import main

    a, b, img = files
    open_and_analyse(qtbot, window, files)
    # Not the defaults: the scaling, the signed reduction, the CAM's colours and opacity reach both alike.
    window.state.update_settings(
        image_size=112, gradient_which="weight", gallery_rows=6, reduction="pca", scaling="minmax", cam_cmap="viridis"
    )
    qtbot.waitUntil(lambda: window.state.insights["r50"].activations.image_size == (112, 112), timeout=120_000)
    wait_idle(qtbot, window)
    window.show_view(view)
    qtbot.waitUntil(lambda: window.views[view].has_content, timeout=60_000)
    if view == "cam":
        window.views["cam"].alpha.setValue(35)
        cell = window.views["cam"].grid.cells[(0, 1)]
        assert cell.overlay.opacity() == pytest.approx(0.35), "the export's opacity is the one on screen"
    extra = {
        "gradients": ["--which", "weight"],
        "activations": ["--rows", "6", "--reduction", "pca", "--scaling", "minmax"],
        "cam": ["--scaling", "minmax", "--cmap", "viridis", "--alpha", "0.35"],
    }[command]
    out = tmp_path / "cli"
    assert (
        main(
            [
                command,
                "--ckpt",
                f"r50={a}",
                "--ckpt",
                f"f99={b}",
                str(img),
                "--size",
                "112",
                *extra,
                "-o",
                str(out),
                "--formats",
                "png",
                "svg",
                "pdf",
            ]
        )
        == 0
    )
    if view != "gradients":  # the colour bars on screen say what the exported ones say
        fig = window.views[view].export_result().figure()
        exported = [ax._colorbar.ax.get_xlabel() for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
        assert exported and [s.label for s in window.views[view].legend.scales] == exported
        assert len(exported) == 1, "the models share one colour bar, also under per-model normalisation"
    for ext in ("svg", "pdf", "png", "csv", "json"):
        (app_file,) = window.views[view].export(tmp_path / f"app.{ext}")
        assert app_file.read_bytes() == (out / f"{stem}.{ext}").read_bytes(), (view, ext)


def test_removing_an_image_frees_its_passes_and_selects_its_neighbour(qtbot, window, files, tmp_path):
    from PIL import Image

    from fishspine.analysis.images import sample_image

    open_and_analyse(qtbot, window, files)
    second = tmp_path / "second.png"
    Image.fromarray(sample_image(80, seed=5)).save(second)
    window.open_paths([str(second)])
    qtbot.waitUntil(lambda: len(window.state.images) == 2, timeout=60_000)
    window.state.select_image(1)
    wait_idle(qtbot, window)
    assert len(window.engine) == 4  # two models on two images
    window.state.remove_image(1)
    wait_idle(qtbot, window)
    assert len(window.engine) == 2 and window.state.selected_image == 0 and window.image_list.count() == 1
    assert window.state.insights and window.engine.passes_run == 4, "back on the first image: from the cache"


def test_an_input_attribution_runs_on_request_with_progress_cancel_and_cache(qtbot, window, files):
    import threading

    open_and_analyse(qtbot, window, files)
    engine, state, view = window.engine, window.state, window.views["cam"]
    window.show_view("cam")
    cells = [view.grid.cells[(0, c)] for c in (1, 2)]

    def shown_method() -> set:
        return {getattr(c.block, "method", None) for c in cells}

    view.method.setCurrentText("integrated_gradients")
    wait_idle(qtbot, window)
    assert view.compute_button.isVisible() and view.compute_button.isEnabled()
    assert engine.attributions_run == 0 and shown_method() == {None}, "chosen, not run: it waits for Compute"
    assert all(c.overlay.image is None for c in cells) and "not computed" in view.grid.headers[1].text
    seen = []
    with qtbot.waitSignal(window.progress.valueChanged, timeout=120_000):
        view.compute_button.click()
        assert not view.compute_button.isEnabled(), "one attribution job at a time"
    window.progress.valueChanged.connect(seen.append)
    wait_idle(qtbot, window)
    assert engine.attributions_run == 2 and shown_method() == {"integrated_gradients"}
    assert {c.block.block for c in cells} == {"input"} and all(c.values.shape == (96, 96) for c in cells)
    assert all(c.overlay.image is not None and c.values.max() == 1 for c in cells)
    assert seen and max(seen) == window.progress.maximum(), "progress ran to the end"
    assert not view.compute_button.isEnabled(), "nothing left to compute"

    # Occlusion, cancelled while its first model runs: nothing of it is kept, Compute is offered again.
    view.method.setCurrentText("occlusion")
    wait_idle(qtbot, window)
    gate = threading.Event()
    # A pre-hook that returns something replaces the input: wait, then return None.
    hold = state.models[0].model.register_forward_pre_hook(lambda *_: gate.wait(120) and None)
    try:
        view.compute_button.click()
        assert window.cancel_button.isVisible()
        window.cancel_button.click()
    finally:
        gate.set()
        hold.remove()
    wait_idle(qtbot, window)
    assert ("info", "occlusion cancelled") in state.messages
    assert engine.attributions_run == 2 and shown_method() == {None} and view.compute_button.isEnabled()

    # Back to IG: the previous result, from the engine's cache; the CAMs are still derived as before.
    view.method.setCurrentText("gradcam")
    wait_idle(qtbot, window)
    assert shown_method() == {"gradcam"} and not view.compute_button.isVisible()
    view.method.setCurrentText("integrated_gradients")
    wait_idle(qtbot, window)
    assert shown_method() == {"integrated_gradients"} and engine.attributions_run == 2
    exported = view.export_result().payload["cams"]
    assert {c["method"] for c in exported} == {"integrated_gradients"} and len(exported) == 2


def test_a_message_is_one_line_and_its_traceback_waits_behind_details(qtbot, window):
    window.state.notify("error", "analysis: RuntimeError: boom\nTraceback (most recent call last):\n  File x")
    assert "Traceback" not in window.messages.toPlainText()
    assert "ERROR: analysis: RuntimeError: boom" in window.messages.toPlainText()
    assert window.details_button.isEnabled() and not window.details.isVisible()
    window.details_button.click()
    assert window.details.isVisible() and "Traceback (most recent call last)" in window.details.toPlainText()
