"""CAMs of one detection of a whole detector: which detection, at which layer, in which pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fishspine.analysis.attribution.detection_cam import Detection, detector_pass, pick_detection
from fishspine.models.detector import DetectorSpec, detector_for
from tests.conftest import tiny_model

SPEC = DetectorSpec(3, 128, 64, [1, 2, 3], ["circle", "square", "ring"])


def confident_detector(name: str = "resnet50"):
    """A tiny untrained detector with a head loud enough to report detections."""
    detector = detector_for(
        tiny_model(name, width=0.125, num_classes=0) if name != "spinenet49" else tiny_model(name, width=0.125), SPEC
    ).eval()
    torch.manual_seed(3)
    for p in detector.head.parameters():
        p.data.normal_(0, 0.05)
    return detector


def image(h: int = 128, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def det(box, label, score):
    return Detection(box, label, SPEC.name_of(label), score)


def test_the_detection_is_the_best_scoring_of_the_class_over_the_box():
    dets = [
        det((0, 0, 10, 10), 0, 0.9),  # right place, wrong class
        det((0, 0, 10, 11), 1, 0.4),
        det((0, 0, 10, 10), 1, 0.6),  # the one: class 1, IoU >= 0.5, best score
        det((30, 30, 40, 40), 1, 0.95),  # right class, elsewhere
    ]
    assert pick_detection(dets, (0, 0, 10, 10), 1) == 2
    assert pick_detection(dets, (0, 0, 10, 10), None) == 0
    assert pick_detection(dets, (100, 100, 120, 120), 1) is None
    assert pick_detection(dets, None, None) == 3  # no box: the top detection


@pytest.mark.parametrize("name", ["resnet50", "spinenet49"])
def test_gradcam_of_a_detection_equals_captum_at_blocks_and_pyramid_levels(name):
    from captum.attr import LayerGradCam

    detector = confident_detector(name)
    pixels = image()
    p = detector_pass(detector, SPEC, pixels)
    assert p.target is not None and p.target == p.detections[0]
    x = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    pick = p.detections.index(p.target)

    def score(inp):
        return detector([inp[0]])[0]["scores"][pick][None]

    body = detector.backbone.body
    block = p.layers[len(body.blocks) - 1]
    for layer, module in ((block, body.taps[body._tap_key(block)]), ("FPN P4", detector.backbone.fpn.layer_blocks[1])):
        want = LayerGradCam(score, module).attribute(x, relu_attributions=True)[0, 0]
        got = torch.from_numpy(p.cam(layer).raw)
        torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["ResNet-50", "SpineNet-49"])
def test_the_default_layer_is_the_pyramid_level_each_detection_came_from(name):
    """The head reads each level on its own: a detection's score has a gradient at its own level only,
    and at P5 (and P6) below it where P6 and P7 are computed from P5 (ResNet's pyramid; SpineNet makes
    P6 and P7 itself). On the demo's trained detectors, whose boxes come from every level."""
    from pathlib import Path

    from PIL import Image

    from fishspine.models.checkpoints import load_checkpoint
    from fishspine.models.detector import pyramid_names

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo"
    ckpt = load_checkpoint(demo / "checkpoints" / f"{name}.safetensors")
    detector, spec, levels = ckpt.detector, ckpt.detector_spec, pyramid_names()
    seen = set()
    for path in sorted((demo / "val").iterdir())[:3]:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        found = detector_pass(detector, spec, pixels, cam=False).detections
        by_size = sorted(found, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        for d in by_size[:2] + by_size[-2:]:  # the smallest come from P3, the largest from higher levels
            p = detector_pass(detector, spec, pixels, d.box, d.label)
            with_gradient = [n for n in levels if p.grads[n].abs().max() > 0]
            source = p.source_level
            assert source == with_gradient[-1]
            top = levels.index(source)
            expected = levels[2 : top + 1] if name == "ResNet-50" and top > 2 else [source]
            assert with_gradient == expected, (d, with_gradient)
            assert p.default_layer(ckpt.model.blocks) == source
            assert not p.cam(source, "gradcam").constant
            seen.add(source)
    assert len(seen) >= 2, seen  # detections of more than one level were tried


def test_maps_are_cropped_to_the_image_and_cams_come_at_its_size():
    """A 128x80 image is padded to 128x96 by the detector: the padding is no part of any map."""
    detector = confident_detector()
    p = detector_pass(detector, SPEC, image(128, 80))
    assert p.outputs["FPN P3"].shape[-2:] == (16, 10)  # stride 8 over 128x80, not 16x12
    assert p.grads["FPN P3"].shape == p.outputs["FPN P3"].shape
    cam = p.cam("FPN P3", "layercam", "R50")
    assert cam.cam.shape == (128, 80) and cam.model == "R50"
    assert cam.target_label.startswith("detection: ") and p.target.category in cam.target_label


def test_detections_alone_hold_no_maps_and_equal_those_of_a_cam_pass():
    detector, pixels = confident_detector(), image()
    alone = detector_pass(detector, SPEC, pixels, cam=False)
    assert alone.target is None and alone.nbytes == 0 and alone.detections
    assert alone.detections == detector_pass(detector, SPEC, pixels).detections


def test_no_detection_over_the_box_says_so():
    detector = confident_detector()
    p = detector_pass(detector, SPEC, image(), box=(0, 0, 2, 2), label=1)
    assert p.target is None and p.detections
    with pytest.raises(ValueError, match="no detection to take a CAM of"):
        p.cam("FPN P3", model="R50")


def test_an_unknown_layer_names_the_pyramid_levels():
    p = detector_pass(confident_detector(), SPEC, image())
    with pytest.raises(ValueError, match="FPN P3, FPN P4, FPN P5, FPN P6, FPN P7"):
        p.cam("P9")


def test_the_command_draws_each_detectors_cam_of_the_asked_object(tmp_path):
    """`fishspine cam --detection X,Y,W,H --category NAME`: a whole detector's CAM of its detection of
    that object, the box in the data; a backbone alone is refused with what to give instead."""
    import json

    from PIL import Image

    from fishspine.models.checkpoints import save_checkpoint
    from tests.test_cli import run

    detector = confident_detector()
    pixels = image()
    Image.fromarray(pixels).save(tmp_path / "im.png")
    top = detector_pass(detector, SPEC, pixels).target
    path = save_checkpoint(detector.backbone.body, tmp_path / "d.safetensors", detector=detector, detector_spec=SPEC)
    x, y, w, h = top.coco_box
    res = run(
        "cam", "--ckpt", f"A={path}", str(tmp_path / "im.png"), "--detection", f"{x},{y},{w},{h}",
        "--category", top.category, "--block", "FPN P3", "-o", str(tmp_path / "out"), "--formats", "png",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    payload = json.loads((tmp_path / "out" / "im_gradcam_detection.json").read_text())
    (cam,) = payload["cams"]
    assert cam["block"] == "FPN P3" and cam["target"] == f"detection: {top.describe()}"
    assert cam["box_xyxy"] == [round(v, 2) for v in top.box] and payload["asked_box_xyxy"] == cam["box_xyxy"]
    assert (tmp_path / "out" / "im_gradcam_detection.png").stat().st_size > 0
    res = run(  # no --block: the level the detection came from
        "cam", "--ckpt", f"A={path}", str(tmp_path / "im.png"), "--detection", f"{x},{y},{w},{h}",
        "--category", top.category, "-o", str(tmp_path / "auto"), "--formats", "png",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (cam,) = json.loads((tmp_path / "auto" / "im_gradcam_detection.json").read_text())["cams"]
    assert cam["block"] == detector_pass(detector, SPEC, pixels, top.box, top.label).source_level

    backbone = save_checkpoint(detector.backbone.body, tmp_path / "b.safetensors")
    res = run("cam", "--ckpt", str(backbone), str(tmp_path / "im.png"), "--detection", "top", "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "a backbone alone" in res.stderr and "fishspine train" in res.stderr
    res = run("cam", "--ckpt", str(path), str(tmp_path / "im.png"), "--detection", "1,2,3", "-o", str(tmp_path / "o"))
    assert res.returncode == 2 and "X,Y,W,H" in res.stderr
    res = run(
        "cam", "--ckpt", str(path), str(tmp_path / "im.png"), "--detection", "top", "--category", "cat",
        "-o", str(tmp_path / "o"),
    )  # fmt: skip
    assert res.returncode == 2 and "no category 'cat'" in res.stderr and "circle (1)" in res.stderr
