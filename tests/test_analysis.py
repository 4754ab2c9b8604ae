"""Activations, CAMs, gradient traces and graphs on tiny models: shapes, invariants, no hooks left."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fishspine.analysis.attribution.activations import compute_activations, normalise, reduce_activation
from fishspine.analysis.attribution.cam import CAM_METHODS, cam_from_gradients, compute_cam, overlay
from fishspine.analysis.attribution.gradients import gradient_trace
from fishspine.analysis.architecture.graph import architecture_graph, choose_layout
from fishspine.analysis.images import ImageError, load_image, sample_image, to_input
from fishspine.analysis.attribution.interactive import analyse, iter_analysis
from fishspine.models import count_hooks, create_model

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


def test_activation_maps_are_small_image_sized_and_cover_every_block(models, image):
    x = to_input(image)
    res = compute_activations(models, x, "mean_abs", "block")
    for label, m in models.items():
        r = res[label]
        assert [b.name for b in r.blocks] == [b.name for b in m.blocks if b.name != "score"] or \
            [b.name for b in r.blocks] == [b.name for b in m.blocks]
        for b in r.blocks:
            assert b.map.dtype == np.float16 and b.map.shape == image.shape[:2]
            assert float(b.map.max()) == pytest.approx(1.0, abs=1e-3) or b.map_max == b.map_min
        assert count_hooks(m) == 0


def test_global_normalisation_shares_one_range(models, image):
    res = compute_activations(models, to_input(image), normalisation="global")
    peaks = [float(b.map.max()) for r in res.values() for b in r.blocks]
    assert max(peaks) == pytest.approx(1.0, abs=1e-3) and min(peaks) < 0.99
    with pytest.raises(ValueError):
        normalise(list(res.values()), "per-pixel")


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_single_pass_equals_dedicated_pass(models, image, method):
    x = to_input(image)
    for label, m in models.items():
        *_, out = iter_analysis({label: m}, x, cam_method=method)
        insight = out[label]
        direct = compute_cam(m, x, insight.cam.block, method, label=label)
        assert direct.class_index == insight.cam.class_index
        np.testing.assert_allclose(direct.cam.astype(np.float32), insight.cam.cam.astype(np.float32), atol=2e-3)
        assert count_hooks(m) == 0


def test_gradcam_formula_and_feature_energy_target(models, image):
    a = torch.rand(3, 4, 4)
    g = torch.zeros(3, 4, 4)
    g[1] = 1.0  # only channel 1 matters
    torch.testing.assert_close(cam_from_gradients(a, g, "gradcam"), a[1])
    spine = compute_cam(models["spine"], to_input(image), "P4", "gradcam")
    assert spine.class_index is None and spine.target_label == "feature energy"
    assert spine.cam.shape == image.shape[:2] and float(spine.cam.max()) == pytest.approx(1.0, abs=1e-3)


def test_overlay_blends_and_rejects_mismatched_shapes(image):
    cam = np.zeros(image.shape[:2], np.float16)
    assert np.array_equal(overlay(image, cam, alpha=0.0), image)
    with pytest.raises(ValueError, match="does not fit"):
        overlay(image, cam[:10])


def test_gradient_trace_orders_deepest_first_and_cleans_up(models, image):
    m = models["r50"]
    x = torch.cat([to_input(image)] * 2)
    t = gradient_trace(m, x)
    assert t.blocks[0] == "layer4.2" and t.blocks[-1] == "stem" and t.depth[0] == 0 and t.depth[-1] == 1
    assert all(v > 0 for v in t.output_grad_norm) and all(v > 0 for v in t.weight_grad_norm)
    assert t.ratio == pytest.approx(t.output_grad_norm[-1] / t.output_grad_norm[0])
    assert all(p.grad is None for p in m.parameters()), "no gradients are left on the model"
    assert count_hooks(m) == 0
    fish = gradient_trace(models["fish"], x)
    merge = fish.blocks.index("head0.merge")
    assert math.isnan(fish.weight_grad_norm[merge])  # a merge point owns no weights


def test_interactive_analysis_is_consistent_with_separate_calls(models, image):
    x = to_input(image)
    insight = analyse(models["r50"], x)
    t = gradient_trace(models["r50"], x)
    assert insight.trace.output_grad_norm == pytest.approx(t.output_grad_norm)


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
