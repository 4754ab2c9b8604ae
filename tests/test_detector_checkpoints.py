"""Whole detectors (backbone, pyramid and FCOS head) in fishspine's format: saved, reopened, refused."""

from __future__ import annotations

import json

import pytest
import torch

from fishspine.models import create_model
from fishspine.models.checkpoints import CheckpointError, load_checkpoint, read_raw, save_checkpoint
from fishspine.models.detector import DetectorSpec, detector_for
from tests.test_checkpoints import no_real_model_built, write_with_header  # noqa: F401  (fixture)

SPEC = DetectorSpec(3, 128, 64, [4, 9, 11], ["circle", "square", "ring"])


def small_detector(variant: str = "resnet50", seed: int = 0):
    torch.manual_seed(seed)
    backbone = create_model(variant, width=0.125, **({"num_classes": 0} if variant != "spinenet49" else {}))
    return backbone, detector_for(backbone, SPEC).eval()


@pytest.mark.parametrize("variant", ["resnet50", "spinenet49"])
def test_a_saved_detector_reopens_whole_and_detects_the_same(variant, tmp_path):
    backbone, detector = small_detector(variant)
    for p in detector.head.parameters():  # a confident head, so that there are detections to compare
        p.data.normal_(0, 0.05)
    path = save_checkpoint(backbone, tmp_path / "d.safetensors", "test", detector=detector, detector_spec=SPEC)
    ckpt = load_checkpoint(path)
    assert ckpt.detector is not None and ckpt.detector_spec == SPEC
    assert ckpt.detector.backbone.body is ckpt.model  # the views analyse the detector's own backbone
    assert ckpt.variant == variant and ckpt.meta["detector"]["category_names"] == ["circle", "square", "ring"]
    x = [torch.rand(3, 128, 112, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        want, got = detector(x)[0], ckpt.detector(x)[0]
    assert len(want["boxes"]) > 0
    for k in ("boxes", "scores", "labels"):
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_a_backbone_alone_has_no_detector(tmp_path):
    backbone, _ = small_detector()
    ckpt = load_checkpoint(save_checkpoint(backbone, tmp_path / "b.safetensors"))
    assert ckpt.detector is None and ckpt.detector_spec is None


def test_saving_a_detector_over_another_backbone_is_refused(tmp_path):
    _, detector = small_detector()
    other, _ = small_detector(seed=1)
    with pytest.raises(ValueError, match="not built over this backbone"):
        save_checkpoint(other, tmp_path / "x.safetensors", detector=detector, detector_spec=SPEC)
    with pytest.raises(ValueError, match="give both or neither"):
        save_checkpoint(other, tmp_path / "x.safetensors", detector_spec=SPEC)


def detector_file(tmp_path, **section_changes):
    backbone, detector = small_detector()
    path = save_checkpoint(backbone, tmp_path / "d.safetensors", detector=detector, detector_spec=SPEC)
    tensors, _, header = read_raw(path)
    header["detector"].update(section_changes)
    header["detector"] = {k: v for k, v in header["detector"].items() if v is not ...}
    return write_with_header(tmp_path / "bad.safetensors", header, tensors)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"num_classes": 0}, r"num_classes 0, which must be a whole number from 1"),
        ({"num_classes": 10**9}, r"num_classes 1000000000, which must be a whole number"),
        ({"num_classes": ...}, "names no num_classes"),
        ({"image_size": 10**6}, r"image_size 1000000, which must be a whole number from 16 to 4096"),
        ({"fpn_channels": "64"}, r"fpn_channels '64'"),
        ({"fpn_channels": 48}, "multiple of 32"),
        ({"head": "retinanet"}, "opens 'fcos' only"),
        ({"anchors": 9}, "detector has anchors"),
        ({"categories": [1, 2]}, "2 categories for 3 classes"),
        ({"categories": [1, 1, 2]}, "repeat an id"),
        ({"category_names": [1, 2, 3]}, "list of names"),
    ],
)
def test_a_lying_detector_section_is_refused_before_anything_is_built(tmp_path, changes, match, no_real_model_built):
    path = detector_file(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_detector_weights_that_do_not_fit_its_header_are_named(tmp_path, no_real_model_built):
    path = detector_file(tmp_path, num_classes=5, categories=[], category_names=[])
    with pytest.raises(CheckpointError, match=r"FCOS detector \(5 classes.*head\.classification_head\.cls_logits"):
        load_checkpoint(path)


def test_a_detector_section_that_is_not_an_object_is_refused(tmp_path):
    backbone, detector = small_detector()
    path = save_checkpoint(backbone, tmp_path / "d.safetensors", detector=detector, detector_spec=SPEC)
    tensors, _, header = read_raw(path)
    header["detector"] = [3, 96]
    bad = write_with_header(tmp_path / "bad.safetensors", json.dumps(header), tensors)
    with pytest.raises(CheckpointError, match="detector is a JSON list, not an object"):
        load_checkpoint(bad)
