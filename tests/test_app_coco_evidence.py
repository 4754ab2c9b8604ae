"""The COCO view's Errors and Evidence pages driven offscreen with pytest-qt: the error breakdown after an
evaluation and its export equal to `fishspine coco --errors`; a table cell opening the objects behind it,
thresholds, crops that open their image, and a missing images folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from fishspine.analysis.coco.errors import error_breakdown  # noqa: E402
from fishspine.analysis.coco.evaluation import DEFAULT_AREA_RANGES, load_ground_truth, load_results  # noqa: E402
from fishspine.analysis.coco.evidence import EVIDENCE_KINDS, evidence  # noqa: E402
from fishspine.analysis.coco.synthetic import synthetic_coco  # noqa: E402
from fishspine.analysis.figures.coco_errors import COLUMNS as ERROR_COLUMNS  # noqa: E402
from fishspine.analysis.figures.coco_errors import error_rows  # noqa: E402
from fishspine.app.qt.views.coco_evidence import NOT_FOUND  # noqa: E402

from .test_app_coco import coco_view, settle  # noqa: E402  a view whose jobs run as the window's, and waiting

SIDE = 320  # pixels of the synthetic images


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A small ground truth with its images, and two detectors' results on it: A (the baseline) and B."""
    from PIL import Image

    root = tmp_path_factory.mktemp("coco")
    gt, dets_a = synthetic_coco(n_images=10, n_categories=3, objects_per_image=5, dets_per_image=12,
                                image_size=SIDE, seed=3)  # fmt: skip
    rng = np.random.default_rng(7)
    dets_b = []
    for d in dets_a:  # another detector: jittered boxes and scores, some detections lost
        if rng.random() < 0.2:
            continue
        x, y, w, h = d["bbox"]
        j = rng.normal(0, 0.1, 4) * [w, h, w, h]
        dets_b.append({**d, "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])],
                       "score": float(np.clip(d["score"] + rng.normal(0, 0.15), 0.01, 1.0))})  # fmt: skip
    images = root / "images"
    images.mkdir()
    for im in gt["images"]:
        pixels = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / im["file_name"])
    paths = {"gt": root / "gt.json", "A": root / "A.json", "B": root / "B.json"}
    for key, data in (("gt", gt), ("A", dets_a), ("B", dets_b)):
        paths[key].write_text(json.dumps(data))
    return {"root": root, "images": images, **{k: str(v) for k, v in paths.items()}}


@pytest.fixture(scope="module")
def command(coco):
    """What `fishspine coco --errors --evidence` writes for these files (called in-process)."""
    from fishspine.cli.main import main

    out, ev_dir = coco["root"] / "out", coco["root"] / "evidence"
    argv = ["coco", "--gt", coco["gt"], "--dt", f"A={coco['A']}", "--dt", f"B={coco['B']}", "--baseline", "A",
            "--errors", "--evidence", str(ev_dir), "--images", str(coco["images"]), "--bootstrap", "0",
            "-o", str(out), "--formats", "png"]  # fmt: skip
    assert main(argv) == 0
    return out, ev_dir


@pytest.fixture
def view(qtbot):
    return coco_view(qtbot, 1200, 900)


def load(qtbot, view, coco, images: str = "") -> None:
    view.state.update_settings(
        coco_gt=coco["gt"], coco_baseline="A", coco_results={"A": coco["A"], "B": coco["B"]}, coco_images=images
    )
    view.evaluate()
    settle(qtbot, view)
    assert list(view.state.coco) == ["A", "B"], view.state.messages


def loaded(coco) -> tuple[dict, dict]:
    gt = load_ground_truth(coco["gt"])
    return gt, {n: load_results(coco[n], gt, "bbox", n) for n in ("A", "B")}


def click_cell(qtbot, view, name: str, column: str) -> None:
    t = view.table
    row = next(i for i in range(t.rowCount()) if t.item(i, 0).data(Qt.UserRole) == name)
    col = next(j for j in range(t.columnCount()) if t.horizontalHeaderItem(j).text() == column)
    qtbot.mouseClick(t.viewport(), Qt.LeftButton, pos=t.visualItemRect(t.item(row, col)).center())


def open_evidence(qtbot, view, column: str = "AP_S") -> None:
    click_cell(qtbot, view, "B", column)
    qtbot.waitUntil(lambda: view.evidence_panel.outcome is not None and not view.jobs.running, timeout=30_000)


def test_errors_page_after_evaluation_and_export_equals_the_command(qtbot, view, coco, command, tmp_path):
    load(qtbot, view, coco)
    gt, dets = loaded(coco)
    expected = {n: error_breakdown(gt, dets[n], n, None, 100) for n in ("A", "B")}
    panel = view.errors_panel
    assert list(panel.breakdowns) == ["A", "B"]
    for n in ("A", "B"):
        for area in DEFAULT_AREA_RANGES:
            assert panel.breakdowns[n][area].as_dict() == expected[n][area].as_dict()
    # The table of "all": AP50 and each cost with its difference against the baseline.
    rows = [r for r in error_rows(expected, "A") if r["area"] == "all"]
    shown = panel.table_texts()
    assert [r[0] for r in shown] == ["A  (baseline)", "B"]
    assert shown[1][1] == f"{rows[1]['AP50']:.1f}"
    c = ERROR_COLUMNS[0]
    assert shown[1][2] == f"{rows[1][f'dAP_{c}']:.2f}  ({rows[1][f'vs_baseline_{c}']:+.2f})"
    assert "(" not in shown[0][2]
    plots = [it for it in panel.plots.ci.items if hasattr(it, "vb")]
    assert len(plots) == len(DEFAULT_AREA_RANGES)

    # Choosing "errors" shows the page; Export writes the command's files, byte for byte.
    view.kind.setCurrentText("errors")
    assert view.pages.currentWidget() is panel
    out, _ = command
    for suffix in ("png", "csv", "json"):
        (written,) = view.export(tmp_path / f"errors.{suffix}")
        assert written.read_bytes() == (out / f"coco_bbox_errors.{suffix}").read_bytes(), suffix
    view.pages.setCurrentIndex(0)
    assert view.kind.currentText() == "table"


def test_the_error_panels_share_a_range_that_holds_every_bar(qtbot):
    """The panels are linked to the first (small objects); bars of a later panel are longer here, and
    must not run off its edge."""
    from fishspine.analysis.coco.errors import ERROR_TYPES, ErrorBreakdown
    from fishspine.app.qt.views.coco_evidence import ErrorsPanel

    def breakdown(name, area, scale):
        delta = {k: scale * (i + 1) / 100 for i, k in enumerate(ERROR_TYPES)}
        return ErrorBreakdown(name, area, 0.3, delta, dict.fromkeys(ERROR_TYPES, 1), 0.2 * scale, 0.1 * scale)

    panel = ErrorsPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    scales = {"small": 0.5, "medium": 1.0, "large": 4.0, "all": 2.0}
    panel.show_breakdowns({n: {a: breakdown(n, a, k) for a, k in scales.items()} for n in ("A", "B")}, "A")
    plots = [it for it in panel.plots.ci.items if hasattr(it, "vb")]
    assert len(plots) == 4
    for plot in plots:
        lo, hi = plot.vb.viewRange()[0]
        for bars in (it for it in plot.items if isinstance(it, pg.BarGraphItem)):
            assert lo <= 0 and max(bars.opts["width"]) <= hi, (plot.titleLabel.text, hi)


def test_a_table_cell_opens_the_evidence_of_that_backbone_and_size_range(qtbot, view, coco, command, tmp_path):
    load(qtbot, view, coco, images=str(coco["images"]))
    gt, dets = loaded(coco)
    click_cell(qtbot, view, "A", "AP_S")  # the baseline's row: nothing behind it to compare
    click_cell(qtbot, view, "B", "AP50")  # not a size range's AP
    assert view.evidence_panel.request is None and not view.jobs.running
    for column, area in (("AP_M", "medium"), ("AP_S", "small")):
        open_evidence(qtbot, view, column)
        panel = view.evidence_panel
        assert view.pages.currentWidget() is panel and view.kind.currentText() == "evidence"
        ev = evidence(gt, ("B", dets["B"]), ("A", dets["A"]), area)
        assert panel.outcome.evidence.area == area and panel.counts() == ev.counts()
        assert panel.outcome.evidence.thresholds == ev.thresholds  # the F1 thresholds
        assert [panel.kinds.tabText(i).rsplit(": ", 1)[1] for i in range(4)] == [
            str(ev.counts()[k]) for k in EVIDENCE_KINDS
        ]
        for i, kind in enumerate(EVIDENCE_KINDS):
            panel.kinds.setCurrentIndex(i)
            assert panel.gallery.count() == ev.counts()[kind]
            for sort in ("score", "iou", "size"):
                panel.sort.setCurrentText(sort)
                shown = [panel.outcome.evidence.items[panel.gallery.item(k).data(Qt.UserRole)]
                         for k in range(panel.gallery.count())]  # fmt: skip
                assert [(it.image_id, it.box) for it in shown] == [
                    (it.image_id, it.box) for it in ev.of_kind(kind, sort)
                ]
            panel.sort.setCurrentText("score")
    assert sum(ev.counts().values()) > 0  # the test saw crops
    assert not [m for m in view.state.messages if m[0] == "error"]

    # Export equals what `coco --evidence` wrote for B against A, small objects.
    _, ev_dir = command
    for suffix in ("png", "csv", "json"):
        (written,) = view.export(tmp_path / f"evidence.{suffix}")
        assert written.read_bytes() == (ev_dir / f"B_small.{suffix}").read_bytes(), suffix


def test_changing_a_threshold_changes_the_counts(qtbot, view, coco):
    load(qtbot, view, coco)
    open_evidence(qtbot, view, "AP")
    gt, dets = loaded(coco)
    panel = view.evidence_panel
    before = panel.counts()
    f1 = dict(panel.outcome.evidence.thresholds)
    panel.thresholds[0].setValue(0.9)  # B keeps only its surest detections
    qtbot.waitUntil(lambda: panel.outcome.evidence.thresholds["B"] == 0.9 and not view.jobs.running, timeout=30_000)
    expected = evidence(gt, ("B", dets["B"]), ("A", dets["A"]), "all", thresholds={"B": 0.9, "A": f1["A"]})
    assert panel.counts() == expected.counts() != before
    assert panel.outcome.evidence.thresholds["A"] == f1["A"]  # the other detector's exact threshold kept
    panel.f1_button.click()
    qtbot.waitUntil(lambda: panel.outcome.evidence.thresholds == f1 and not view.jobs.running, timeout=30_000)
    assert panel.counts() == before and panel.thresholds[0].value() == pytest.approx(f1["B"], abs=5e-4)
    view.baseline.setCurrentText("B")  # another baseline: the evidence shown no longer answers the table
    assert panel.request is None and panel.outcome is None and panel.gallery.count() == 0


def test_clicking_a_crop_adds_its_image_and_asks_for_grad_cam(qtbot, view, coco):
    load(qtbot, view, coco, images=str(coco["images"]))
    open_evidence(qtbot, view, "AP")
    panel = view.evidence_panel
    kind = next(i for i, k in enumerate(EVIDENCE_KINDS) if panel.counts()[k])
    panel.kinds.setCurrentIndex(kind)
    entry = panel.gallery.item(0)
    item = panel.outcome.evidence.items[entry.data(Qt.UserRole)]
    file_name = next(im["file_name"] for im in json.loads(Path(coco["gt"]).read_text())["images"]
                     if im["id"] == item.image_id)  # fmt: skip
    requested: list[str] = []
    view.view_requested.connect(requested.append)
    rect = panel.gallery.visualItemRect(entry)
    qtbot.mouseClick(panel.gallery.viewport(), Qt.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: requested == ["cam"], timeout=30_000)
    state = view.state
    assert len(state.images) == 1 and Path(state.images[0].path) == coco["images"] / file_name
    assert state.selected_image == 0 and state.images[0].pixels.shape == (SIDE, SIDE, 3)
    x, y, w, h = item.box  # the object is outlined over the image's maps and CAMs
    assert state.images[0].focus == pytest.approx((x, y, x + w, y + h)) and state.images[0].focus_label
    assert any(f"image {item.image_id} ({file_name}), box [{item.box[0]:.0f}" in t for _, t in state.messages)
    # The same crop again selects the loaded image instead of adding it twice.
    panel.choose(entry.data(Qt.UserRole))
    assert len(state.images) == 1 and requested == ["cam", "cam"]


def test_without_the_images_the_tiles_say_image_not_found(qtbot, view, coco, tmp_path):
    load(qtbot, view, coco, images="")
    open_evidence(qtbot, view, "AP")
    panel = view.evidence_panel
    assert all(c is None for c in panel.outcome.crops) and panel.outcome.crops
    kind = next(i for i, k in enumerate(EVIDENCE_KINDS) if panel.counts()[k])
    panel.kinds.setCurrentIndex(kind)
    tips = [panel.gallery.item(k).toolTip() for k in range(panel.gallery.count())]
    assert tips and all(NOT_FOUND in t for t in tips)
    assert "no images folder" in panel.folder_label.text()
    panel.choose(panel.gallery.item(0).data(Qt.UserRole))  # nothing to open: a warning, no image
    assert not view.state.images and view.state.messages[-1][0] == "warning"
    # A folder without those files: the same tiles, no error; a folder with them: crops.
    panel.set_folder(str(tmp_path))
    qtbot.waitUntil(lambda: panel.outcome.folder == str(tmp_path) and not view.jobs.running, timeout=30_000)
    assert all(c is None for c in panel.outcome.crops)
    panel.set_folder(str(coco["images"]))
    qtbot.waitUntil(lambda: panel.outcome.folder == str(coco["images"]) and not view.jobs.running, timeout=30_000)
    assert all(c is not None for c in panel.outcome.crops)
    assert view.state.settings.coco_images == str(coco["images"])  # remembered
    assert not [m for m in view.state.messages if m[0] == "error"]
