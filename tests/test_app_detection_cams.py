"""Detection CAMs in the app: a crop of the COCO evidence gallery shows every loaded detector's CAM of
its detection of that object, and Export writes what `fishspine cam --detection` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402

from fishspine.analysis.attribution.detection_cam import box_iou, detector_pass  # noqa: E402
from fishspine.analysis.attribution.engine import AnalysisEngine  # noqa: E402
from fishspine.analysis.coco.synthetic import synthetic_coco  # noqa: E402
from fishspine.app.components.sources import load_model_source  # noqa: E402
from fishspine.models.checkpoints import save_checkpoint  # noqa: E402
from fishspine.models.detector import DetectorSpec, detector_for  # noqa: E402

from .conftest import tiny_model  # noqa: E402
from .test_app_coco import coco_view, settle  # noqa: E402

SIDE = 256


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A ground truth with images; B's results are a real (tiny, untrained) detector's detections on
    them, saved whole as B.safetensors, so every B detection in the gallery is one that detector makes."""
    import torch
    from PIL import Image

    root = tmp_path_factory.mktemp("detcam")
    gt, dets_a = synthetic_coco(n_images=4, n_categories=3, objects_per_image=4, dets_per_image=8,
                                image_size=SIDE, seed=5)  # fmt: skip
    spec = DetectorSpec(3, SIDE, 64, [c["id"] for c in gt["categories"]], [c["name"] for c in gt["categories"]])
    detector = detector_for(tiny_model("resnet50", width=0.125, num_classes=0), spec).eval()
    torch.manual_seed(3)
    for p in detector.head.parameters():
        p.data.normal_(0, 0.05)
    (root / "images").mkdir()
    rng = np.random.default_rng(1)
    dets_b = []
    for im in gt["images"]:
        pixels = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / im["file_name"], quality=100)
        pixels = np.asarray(Image.open(root / "images" / im["file_name"]).convert("RGB"))  # as read back (JPEG)
        for d in detector_pass(detector, spec, pixels).detections:
            dets_b.append({"image_id": im["id"], "category_id": spec.categories[d.label],
                           "bbox": d.coco_box, "score": d.score})  # fmt: skip
    for name, data in (("gt", gt), ("A", dets_a), ("B", dets_b)):
        (root / f"{name}.json").write_text(json.dumps(data))
    save_checkpoint(detector.backbone.body, root / "B.safetensors", "test", detector=detector, detector_spec=spec)
    return root


@pytest.fixture
def view(qtbot, files):
    v = coco_view(qtbot, 1200, 1000, AnalysisEngine())
    state = v.state
    state.add_model(load_model_source(str(files / "B.safetensors")))
    state.update_settings(
        coco_gt=str(files / "gt.json"),
        coco_baseline="A",
        coco_results={"A": str(files / "A.json"), "B": str(files / "B.json")},
        coco_images=str(files / "images"),
    )
    v.evaluate()
    settle(qtbot, v)
    return v


def test_clicking_a_crop_shows_each_detectors_cam_and_exports_what_the_command_writes(qtbot, view, files, tmp_path):
    from fishspine.cli.main import main

    t = view.table
    row = next(i for i in range(t.rowCount()) if t.item(i, 0).data(Qt.UserRole) == "B")
    col = next(j for j in range(t.columnCount()) if t.horizontalHeaderItem(j).text() == "AP")
    qtbot.mouseClick(t.viewport(), Qt.LeftButton, pos=t.visualItemRect(t.item(row, col)).center())
    panel = view.evidence_panel
    qtbot.waitUntil(lambda: panel.outcome is not None and not view.jobs.running, timeout=30_000)
    kinds = [panel.kinds.tabData(i) for i in range(panel.kinds.count())]
    panel.kinds.setCurrentIndex(kinds.index("false_positive_only"))  # B's own detections
    assert panel.gallery.count() > 0
    entry = panel.gallery.item(0)
    item = panel.outcome.evidence.items[entry.data(Qt.UserRole)]
    requested: list[str] = []
    view.view_requested.connect(requested.append)
    qtbot.mouseClick(panel.gallery.viewport(), Qt.LeftButton, pos=panel.gallery.visualItemRect(entry).center())
    qtbot.waitUntil(lambda: panel.cams.result is not None and not view.jobs.running, timeout=60_000)
    assert requested == []  # with a detector loaded, a click shows its CAM here (double click: Grad-CAM)
    result = panel.cams.result
    (cam,) = result.cams.values()
    x, y, w, h = item.box
    assert box_iou(cam.box, (x, y, x + w, y + h)) > 0.99  # the detector's own detection of that object
    assert cam.target_label.startswith("detection: ") and cam.model == "B"
    assert cam.block.startswith("FPN P")  # by default at the pyramid level the detection came from
    assert panel.cams.isVisible() and not panel.cams.figure.pixmap().isNull()
    assert "drawing detection CAMs" in view.jobs.titles  # matplotlib drew it in a worker, not on the UI thread

    (app_json,) = panel.cams.export(tmp_path / "app.json")
    file_name = next(im["file_name"] for im in json.loads((files / "gt.json").read_text())["images"]
                     if im["id"] == item.image_id)  # fmt: skip
    category = panel.request.categories[item.category_id]
    argv = ["cam", "--ckpt", f"B={files / 'B.safetensors'}", str(files / "images" / file_name), "--detection",
            ",".join(repr(float(v)) for v in item.box), "--category", category, "-o", str(tmp_path / "cli"),
            "--formats", "png"]  # fmt: skip
    assert main(argv) == 0
    cli_json = tmp_path / "cli" / f"{file_name.rsplit('.', 1)[0]}_gradcam_detection.json"
    assert json.loads(app_json.read_text()) == json.loads(cli_json.read_text())

    panel.cams.layer.setCurrentText("FPN P4")  # another layer: recomputed from the held pass
    qtbot.waitUntil(lambda: panel.cams.result.layer == "FPN P4" and not view.jobs.running, timeout=30_000)
    assert next(iter(panel.cams.result.cams.values())).block == "FPN P4"
    from fishspine.analysis.attribution.engine import default_cam_block
    from fishspine.app.qt.views.detection_cams import BLOCK_LAYER

    panel.cams.layer.setCurrentText(BLOCK_LAYER)
    qtbot.waitUntil(lambda: panel.cams.result.layer == BLOCK_LAYER and not view.jobs.running, timeout=30_000)
    blocks = view.state.models[0].model.blocks
    assert next(iter(panel.cams.result.cams.values())).block == default_cam_block(blocks)


def test_clicking_an_object_in_the_grad_cam_image_shows_each_detectors_cam_of_it(qtbot, files, tmp_path):
    """In the Grad-CAM view, a click on the image picks the best detection there: it is outlined, and
    every loaded detector's CAM of its detection of that object is shown below the grid."""
    from PIL import Image

    from fishspine.app.qt.window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1400, 1000)
    w.show()
    image = files / "images" / sorted(p.name for p in (files / "images").iterdir())[0]
    w.open_paths([str(files / "B.safetensors"), str(image)])
    qtbot.waitUntil(lambda: bool(w.state.insights) and w.state.image is not None, timeout=120_000)
    w.show_view("cam")
    view = w.views["cam"]
    qtbot.waitUntil(lambda: view.has_content, timeout=60_000)
    entry = w.state.models[0]
    top = detector_pass(entry.detector, entry.detector_spec, np.asarray(Image.open(image).convert("RGB"))).target
    scale = view.shown_image().shape[0] / w.state.image.pixels.shape[0]
    x, y = (top.box[0] + top.box[2]) / 2 * scale, (top.box[1] + top.box[3]) / 2 * scale
    view.detect_at(x, y)
    panel = view.detection_cams
    qtbot.waitUntil(lambda: panel.result is not None and not w._workers, timeout=60_000)
    (cam,) = panel.result.cams.values()
    assert cam.box == pytest.approx(top.box, abs=1e-3) and w.state.image.focus == pytest.approx(top.box, abs=1e-3)
    assert panel.isVisible()
    w.state.remove_image(0)  # its image gone: so is the panel
    assert panel.result is None and not panel.isVisible()
