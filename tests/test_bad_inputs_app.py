"""The corpus of bad inputs (tests/bad_inputs.py) dropped on the real window: every file gets a message that
names it, no traceback reaches the user, and what was loaded (models, images, settings) stays as it was."""

from __future__ import annotations

from dataclasses import asdict

import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from .bad_inputs import write_bad_checkpoints, write_bad_images, write_bad_sessions
from .test_app import files, open_and_analyse, wait_idle, window  # noqa: F401 - shared fixtures


def snapshot(w) -> tuple:
    s = w.state
    return (
        [m.label for m in s.models],
        [id(m.model) for m in s.models],
        [im.key for im in s.images],
        s.selected_image,
        asdict(s.settings),
    )


def test_every_bad_file_dropped_on_the_window_is_refused_and_changes_nothing(qtbot, window, files, tmp_path):
    open_and_analyse(qtbot, window, files)
    cases = {
        **{f"image:{k}": p for k, p in write_bad_images(tmp_path / "images").items()},
        **{f"checkpoint:{k}": p for k, p in write_bad_checkpoints(tmp_path / "checkpoints").items()},
        **{f"session:{k}": p for k, p in write_bad_sessions(tmp_path / "sessions").items()},
    }
    outcome: dict[str, list[str]] = {"refused cleanly": [], "no message": [], "traceback": [], "state changed": []}
    for name, path in cases.items():
        before, seen = snapshot(window), len(window.state.messages)
        window.open_paths([str(path)])
        wait_idle(qtbot, window, timeout=60_000)
        said = [text for level, text in window.state.messages[seen:] if level in ("error", "warning")]
        if snapshot(window) != before:
            outcome["state changed"].append(name)
        elif any("Traceback" in text for text in said):
            outcome["traceback"].append(name)
        elif not any(path.name in text for text in said):
            outcome["no message"].append(name)
        else:
            outcome["refused cleanly"].append(name)
    print({k: len(v) for k, v in outcome.items()}, "of", len(cases))
    assert outcome["refused cleanly"] == list(cases), {k: v for k, v in outcome.items() if k != "refused cleanly"}
    assert window.state.insights and set(window.state.insights) == {"r50", "f99"}


def test_every_bad_coco_file_is_refused_and_the_evaluation_shown_stays(qtbot, window, tmp_path):
    from .bad_inputs import write_bad_coco

    good_gt, good_dt, cases = write_bad_coco(tmp_path / "coco")
    # The COCO view scores boxes: a result file whose masks alone are bad is a valid bbox result file.
    cases = {n: c for n, c in cases.items() if not (c[0] == "dt" and c[2] == "segm")}
    view, state = window.views["coco"], window.state
    state.update_settings(coco_gt=str(good_gt), coco_results={"good": str(good_dt)})
    view.evaluate()
    qtbot.waitUntil(lambda: "good" in state.coco, timeout=60_000)
    wait_idle(qtbot, window)
    shown = state.coco["good"]
    refused = []
    for name, (role, path, _iou_type) in cases.items():
        seen = len(state.messages)
        if role == "gt":
            state.update_settings(coco_gt=str(path))
            view.evaluate()
        else:
            view.add_result_files([path])
        wait_idle(qtbot, window, timeout=60_000)
        said = [text for level, text in state.messages[seen:] if level in ("error", "warning")]
        state.settings.coco_results = {"good": str(good_dt)}  # the bad file leaves the list for the next case
        if (
            any(path.name in text for text in said)
            and not any("Traceback" in text for text in said)
            and state.settings.coco_gt == str(good_gt)
            and state.coco.get("good") is shown
        ):
            refused.append(name)
    missed = [n for n in cases if n not in refused]
    print(f"COCO files: {len(refused)} of {len(cases)} refused cleanly")
    assert not missed, missed
