"""The analysis engine: one pass per (model, image, size, precision, target), every view derived from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fishspine.analysis.attribution.engine import AnalysisEngine, activations, default_cam_block, insights
from fishspine.analysis.attribution.targets import target_of
from fishspine.analysis.images import resize_longer_side, sample_image, to_input
from fishspine.analysis.jobs import JobCancelled, Progress, run_job
from fishspine.analysis.options import CAM_METHODS
from fishspine.models import count_hooks

from .conftest import TINY_CLASSES, tiny_model

SIZE = 96


@pytest.fixture(scope="module")
def image():
    return sample_image(128)


@pytest.fixture(scope="module")
def models():
    return {
        name: tiny_model(variant)
        for name, variant in (("r50", "resnet50"), ("fish", "fishnet99"), ("sc", "scnet50"), ("spine", "spinenet49S"))
    }


@pytest.fixture(scope="module")
def analysed(models, image):
    engine = AnalysisEngine()
    passes = run_job(engine.iter_passes(models, image, "sample", SIZE))
    return engine, passes


def test_a_pass_captures_every_block_and_leaves_the_model_clean(models, analysed):
    _, passes = analysed
    for label, m in models.items():
        p = passes[label]
        assert list(p.outputs) == [b.name for b in m.blocks]
        assert set(p.target_grads) == set(p.outputs) == set(p.output_grad_norm)
        for name, out in p.outputs.items():
            assert p.target_grads[name].shape == out.shape and not out.requires_grad
        assert count_hooks(m) == 0
        assert all(q.grad is None for q in m.parameters()), "no gradients are left on the model"


def test_activation_maps_are_image_sized_and_normalised_as_asked(analysed, image):
    _, passes = analysed
    shape = resize_longer_side(image, SIZE).shape[:2]
    per_block = activations(passes, "mean_abs", "block")
    for r in per_block.values():
        for b in r.blocks:
            assert b.map.dtype == np.float16 and b.map.shape == shape
            assert 0.0 <= float(b.map.min()) and float(b.map.max()) <= 1.0
            assert float(b.map.max()) > 0.5 or b.map_max == b.map_min  # scaled by the block's own range
    shared = activations(passes, "mean_abs", "global")
    peaks = [float(b.map.max()) for r in shared.values() for b in r.blocks]
    assert max(peaks) > 0.9 and min(peaks) < 0.5
    # Global scaling is one linear map of the raw values: a block's map is its per-block map rescaled.
    lo = min(b.map_min for r in shared.values() for b in r.blocks)
    hi = max(b.map_max for r in shared.values() for b in r.blocks)
    b_block, b_global = per_block["fish"].blocks[3], shared["fish"].blocks[3]
    raw = b_block.map_min + b_block.map.astype(np.float32) * (b_block.map_max - b_block.map_min)
    np.testing.assert_allclose(b_global.map.astype(np.float32), (raw - lo) / (hi - lo), atol=2e-3)
    # Deriving again does not disturb what was derived before (the cache holds per-block maps).
    assert float(per_block["fish"].blocks[3].map.max()) > 0.5


@pytest.mark.parametrize("label", ["r50", "fish", "sc", "spine"])
def test_engine_gradcam_equals_captum_on_every_family(models, analysed, image, label):
    from captum.attr import LayerGradCam

    _, passes = analysed
    model, p = models[label], passes[label]
    block = default_cam_block(model.blocks)
    x = to_input(resize_longer_side(image, SIZE))
    if model.has_classifier:
        attr = LayerGradCam(model, model.tap(block)).attribute(x, target=p.class_index, relu_attributions=True)
    else:

        def energy(inp):
            return target_of(model(inp))[0].reshape(1)

        attr = LayerGradCam(energy, model.tap(block)).attribute(x, relu_attributions=True)
    model.zero_grad(set_to_none=True)
    ours = torch.nn.functional.relu((p.target_grads[block].mean(dim=(1, 2))[:, None, None] * p.outputs[block]).sum(0))
    torch.testing.assert_close(ours, attr[0, 0].detach(), rtol=1e-4, atol=1e-6)
    from fishspine.analysis.attribution.cam import finish_cam

    for scaling in ("percentile", "minmax"):
        cam = p.cam(block, "gradcam", label, scaling)
        theirs = finish_cam(attr[0, 0].detach(), p.image_size, scaling)
        assert cam.raw_max == pytest.approx(theirs.peak, rel=1e-4)
        np.testing.assert_allclose(cam.cam.astype(np.float32), theirs.cam.astype(np.float32), atol=2e-3)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_every_cam_method_at_any_block_equals_a_dedicated_pass(models, analysed, image, method):
    from fishspine.analysis.attribution.cam import cam_from_gradients

    _, passes = analysed
    model, p = models["fish"], passes["fish"]
    x = to_input(resize_longer_side(image, SIZE))
    for block in ("tail1.0", default_cam_block(model.blocks), "head1.1"):
        with torch.enable_grad(), model.capture([block], grads=True) as cap:
            score, cls = target_of(model(x), p.class_index, "score")
            score.backward()
        model.zero_grad(set_to_none=True)
        direct = cam_from_gradients(cap.outputs[block][0].detach(), cap.grads[block][0], method)
        torch.testing.assert_close(
            cam_from_gradients(p.outputs[block], p.target_grads[block], method), direct, rtol=1e-4, atol=1e-6
        )


def test_the_trace_is_the_loss_gradient_and_its_ratio_follows_the_plotted_norms(models, analysed, image):
    _, passes = analysed
    model, p = models["r50"], passes["r50"]
    x = to_input(resize_longer_side(image, SIZE))
    with torch.enable_grad(), model.capture(grads=True) as cap:
        loss, _ = target_of(model(x), p.class_index, "cross_entropy")
        loss.backward()
    model.zero_grad(set_to_none=True)
    t = p.trace("r50")
    assert t.blocks[0] == "layer4.2" and t.blocks[-1] == "stem" and t.loss == "cross_entropy"
    assert t.output_grad_norm == pytest.approx([float(cap.grads[b].norm()) for b in t.blocks], rel=1e-5)
    assert t.ratio_of("output") == pytest.approx(t.output_grad_norm[-1] / t.output_grad_norm[0])
    assert t.ratio_of("weight") == pytest.approx(t.weight_grad_norm[-1] / t.weight_grad_norm[0])
    assert t.ratio_of("weight") != pytest.approx(t.ratio_of("output"), rel=1e-3)
    fish = passes["fish"].trace("fish")
    assert math.isnan(fish.weight_grad_norm[fish.blocks.index("head0.merge")])  # a merge owns no weights
    assert passes["spine"].trace().loss == "feature_energy"


def test_settings_that_need_no_pass_run_none(models, image):
    engine = AnalysisEngine()
    passes = run_job(engine.iter_passes(models, image, "sample", SIZE))
    assert engine.passes_run == len(models)
    for reduction in ("max", "topk", "pca", "mean_abs"):
        for normalisation in ("block", "model", "global"):
            for method in CAM_METHODS:
                again = run_job(engine.iter_passes(models, image, "sample", SIZE))
                insights(again, reduction, normalisation, method, {"fish": "tail1.0"})
    assert engine.passes_run == len(models), "reduction, normalisation, CAM method and block re-derive"
    assert all(again[k] is passes[k] for k in models)
    run_job(engine.iter_passes(models, image, "sample", SIZE + 32))  # a new input size
    run_job(engine.iter_passes(models, image, "other", SIZE))  # a new image
    run_job(engine.iter_passes({"r50": models["r50"]}, image, "sample", SIZE, class_index=3))  # a new target
    run_job(engine.iter_passes({"r50": models["r50"]}, image, "sample", SIZE, precision="bf16"))
    assert engine.passes_run == 3 * len(models) + 2


def test_the_cache_is_bounded_in_bytes_and_frees_what_is_removed(models, image):
    engine = AnalysisEngine()
    one = engine.analyse(models["r50"], image, engine.key(models["r50"], "a", SIZE))
    engine.max_bytes = int(one.nbytes * 2.5)
    for name in "bcd":
        engine.analyse(models["r50"], image, engine.key(models["r50"], name, SIZE))
    assert len(engine) == 2 and engine.nbytes <= engine.max_bytes
    assert engine.cached(engine.key(models["r50"], "a", SIZE)) is None, "least recently used went first"
    engine.max_bytes = 1 << 40
    engine.analyse(models["fish"], image, engine.key(models["fish"], "d", SIZE))
    assert engine.forget(model=models["r50"]) == 2
    assert len(engine) == 1 and engine.forget(image="d") == 1 and engine.nbytes == 0


def test_a_class_past_the_classifier_is_refused_clearly(models, image):
    engine = AnalysisEngine()
    with pytest.raises(ValueError, match=f"class {TINY_CLASSES} is out of range: the model has {TINY_CLASSES} classes"):
        engine.analyse(models["r50"], image, engine.key(models["r50"], "a", SIZE, class_index=TINY_CLASSES))
    assert count_hooks(models["r50"]) == 0


def test_jobs_return_their_result_and_yield_only_progress():
    def job():
        yield Progress(0, 2, "first")
        yield Progress(1, 2, "second")
        return "result"

    seen = []
    assert run_job(job(), seen.append) == "result"
    assert [p.text for p in seen] == ["first", "second"]

    def tuple_job():
        yield 1, 2, "old style"
        return None

    with pytest.raises(TypeError, match="yields Progress"):
        run_job(tuple_job())
    closed = []

    def long_job():
        try:
            for i in range(100):
                yield Progress(i, 100)
        finally:
            closed.append(True)

    with pytest.raises(JobCancelled):
        run_job(long_job(), cancelled=lambda: True)
    assert closed == [True]
