"""Activations, CAMs, gradient traces and graphs on tiny models: shapes, invariants, no hooks left."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fishspine.analysis.architecture.graph import architecture_graph, choose_layout
from fishspine.analysis.attribution.activations import reduce_activation
from fishspine.analysis.attribution.cam import overlay
from fishspine.analysis.images import ImageError, load_image, sample_image
from fishspine.models import create_model

from .conftest import tiny_model as tiny


@pytest.fixture(scope="module")
def image():
    return sample_image(96)


@pytest.fixture(scope="module")
def models():
    return {"r50": tiny("resnet50"), "fish": tiny("fishnet99"), "spine": tiny("spinenet49S")}


def test_reductions_have_their_meaning():
    t = torch.zeros(4, 5, 6)
    t[2, 1, 1] = -3.0
    t[0, 3, 3] = 2.0
    assert reduce_activation(t, "mean_abs")[1, 1] == pytest.approx(0.75)
    assert reduce_activation(t, "max")[3, 3] == 2.0 and reduce_activation(t, "max")[1, 1] == 0.0
    top1 = reduce_activation(t, "topk", k=1)  # channel 2 is the strongest
    assert top1[1, 1] == 3.0 and top1[3, 3] == 0.0
    pc = reduce_activation(torch.randn(8, 5, 5), "pca")
    assert pc.shape == (5, 5)
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_activation(t, "median")


def test_overlay_blends_and_rejects_mismatched_shapes(image):
    cam = np.zeros(image.shape[:2], np.float16)
    assert np.array_equal(overlay(image, cam, alpha=0.0), image)
    with pytest.raises(ValueError, match="does not fit"):
        overlay(image, cam[:10])


def test_graph_layouts_follow_roles_and_edges_are_classified():
    assert choose_layout({"stem", "permuted", "output"}) == "scale-permuted"
    assert choose_layout({"stem", "tail", "body", "head"}) == "fish"
    assert choose_layout({"stem", "stage"}) == "staircase"
    g = architecture_graph(create_model("spinenet49"), 640)
    assert g.layout == "scale-permuted"
    assert sum(n.macs for n in g.nodes) == 28_261_990_400  # the authors' count at 640
    assert sum(n.params for n in g.nodes) == 21_831_488
    kinds = {(e.source, e.target): e.kind for e in g.edges}
    assert kinds[("block3", "block6")] == "down" and kinds[("block10", "block13")] == "up"
    for n in g.nodes:
        assert g.positions[n.name][1] == n.level
    f = architecture_graph(create_model("fishnet99", width=0.25), with_macs=False)
    assert f.layout == "fish"
    assert [e for e in f.edges if e.source == "stem" and e.target.startswith("body2.transfer")][0].kind == "lateral"


def test_bad_images_get_clear_errors(tmp_path):
    (tmp_path / "a.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "a.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "b.png")
    from PIL import Image

    Image.fromarray(sample_image(64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.png")


def test_block_macs_work_for_small_widths_whose_maps_reach_1x1():
    from fishspine.analysis.architecture.graph import block_macs

    macs = block_macs(create_model("scnet50", width=0.25, num_classes=0).train(), 224)
    assert sum(macs.values()) > 0
