"""Map colour scales (issue 11): percentile or min-max ranges, signed maps centred at 0, constant CAMs
said to be constant, and a colour bar naming what the colour measures on every exported map figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fishspine.analysis.attribution.activations import ActivationResult, BlockMap, ReducedOutput, normalise
from fishspine.analysis.attribution.cam import CamResult, finish_cam
from fishspine.analysis.attribution.engine import AnalysisEngine, activations, default_cam_block
from fishspine.analysis.figures.attribution import activations_export, cam_export
from fishspine.analysis.images import resize_longer_side, sample_image
from fishspine.analysis.jobs import run_job
from fishspine.analysis.options import NORMALISATIONS, REDUCTION_LABELS, REDUCTIONS, SIGNED_CMAP

from .conftest import tiny_model

SIZE = (32, 32)


def hot_pixel_output(seed: int = 0) -> torch.Tensor:
    """A (4, 16, 16) block output in [0, 1] but for one pixel a thousand times brighter."""
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(4, 16, 16, generator=g)
    out[:, 5, 7] = 1000.0
    return out


def one_block(out: torch.Tensor, reduction: str = "mean_abs") -> ActivationResult:
    bm = BlockMap("b", "stage", 2, tuple(out.shape), ReducedOutput(out, reduction, SIZE))
    return ActivationResult("m", SIZE, reduction, "block", [bm])


def test_percentile_scaling_keeps_a_map_with_one_hot_pixel_visible():
    result = one_block(hot_pixel_output())
    normalise([result], "block", "minmax")
    assert float(np.median(result.blocks[0].map)) < 0.01, "min-max: the hot pixel blacks out the rest"
    normalise([result], "block", "percentile")
    assert float(np.median(result.blocks[0].map)) > 0.2
    cam = hot_pixel_output()[0]
    assert float(np.median(finish_cam(cam, SIZE, "minmax").cam)) < 0.01
    done = finish_cam(cam, SIZE, "percentile")
    assert float(np.median(done.cam)) > 0.2 and done.hi < 2 and done.peak > 100


def test_minmax_reproduces_the_maps_of_before_exactly():
    out = hot_pixel_output(1)
    result = one_block(out)
    normalise([result], "block", "minmax")
    native = out.abs().mean(0)
    lo, hi = float(native.min()), float(native.max())
    m = F.interpolate(native[None, None], size=SIZE, mode="bilinear", align_corners=False)[0, 0]
    before = ((m - lo) / max(hi - lo, 1e-12)).clamp_(0, 1).numpy().astype(np.float16)
    assert np.array_equal(result.blocks[0].map, before)
    cam = torch.rand(7, 7, generator=torch.Generator().manual_seed(2))
    resized = F.interpolate(cam[None, None], size=SIZE, mode="bilinear", align_corners=False)[0, 0]
    before_cam = (resized / resized.max()).clamp(0, 1).numpy().astype(np.float16)
    assert np.array_equal(finish_cam(cam, SIZE, "minmax").cam, before_cam)


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
@pytest.mark.parametrize("scaling", ["percentile", "minmax"])
def test_signed_maps_have_limits_symmetric_about_zero(normalisation, scaling):
    from fishspine.analysis.attribution.activations import colour_scales

    results = [one_block(torch.randn(6, 12, 12, generator=torch.Generator().manual_seed(s)), "pca") for s in (3, 4)]
    normalise(results, normalisation, scaling)
    for r in results:
        b = r.blocks[0]
        assert b.lo == -b.hi and b.hi > 0
        assert r.cmap == SIGNED_CMAP
    (scale,) = colour_scales({"a": results[0]})  # one model: one bar under every normalisation
    assert (0.5, "0") in scale.ticks and "PC1 (signed)" in scale.label


@pytest.mark.parametrize(
    "cam, constant",
    [
        (torch.zeros(5, 5), True),
        (torch.full((5, 5), 3.0), True),
        (torch.full((5, 5), 3.0) + 1e-9 * torch.rand(5, 5, generator=torch.Generator().manual_seed(0)), True),
        (torch.full((5, 5), 3.0) + 1e-3 * torch.rand(5, 5, generator=torch.Generator().manual_seed(0)), False),
    ],
)
def test_a_constant_cam_is_shown_uniform_and_said_to_be_constant(cam, constant):
    from fishspine.analysis.figures.attribution import cam_title

    for scaling in ("percentile", "minmax"):
        done = finish_cam(cam.double(), SIZE, scaling)
        assert done.constant == constant
        if constant:
            assert float(done.cam.min()) == float(done.cam.max())
        result = CamResult("m", "b", "gradcam", 0, done.peak, done.cam, cam.numpy(), scaling, done.hi, done.constant)
        assert ("constant CAM" in cam_title("m", result)) == constant


def test_an_input_attribution_is_rescaled_from_the_raw_map_it_keeps():
    raw = hot_pixel_output(5)[0]
    done = finish_cam(raw, SIZE, "minmax")
    held = CamResult("m", "input", "occlusion", 0, done.peak, done.cam, raw.numpy(), "minmax", done.hi, False)
    again = held.rescaled("percentile")
    assert again.scaling == "percentile" and np.array_equal(again.cam, finish_cam(raw, SIZE, "percentile").cam)
    assert held.rescaled("minmax") is held


@pytest.fixture(scope="module")
def passes():
    models = {"r50": tiny_model("resnet50"), "fish": tiny_model("fishnet99")}
    image = sample_image(80)
    return run_job(AnalysisEngine().iter_passes(models, image, "sample", 64)), resize_longer_side(image, 64)


def colour_bars(fig) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_activation_figure_has_a_colour_bar_naming_the_reduction(passes, reduction):
    found, shown = passes
    for normalisation in NORMALISATIONS:
        results = activations(found, reduction, normalisation)
        fig = activations_export("sample", shown, results, rows=2).figure()
        bars = colour_bars(fig)
        (bar,) = bars  # the models share one bar under every normalisation
        label = bar.ax.get_xlabel()
        assert REDUCTION_LABELS[reduction] in label
        assert ("each block scaled to its own range" in label) == (normalisation == "block")
        if normalisation == "model":  # the bar is in fractions of each model's range; the ranges are named
            assert "each model scaled to its own range" in label
            for m, r in results.items():
                assert f"{m} {r.blocks[0].lo:.3g} to {r.blocks[0].hi:.3g}" in label
        if normalisation == "global":  # one scale for every model: its ends are the shared raw range
            lo, hi = results["r50"].blocks[0].lo, results["r50"].blocks[0].hi
            assert all((b.lo, b.hi) == (lo, hi) for r in results.values() for b in r.blocks)
            ticks = [t.get_text() for t in bar.ax.get_xticklabels()]
            assert ticks[0] == f"{lo:.3g}" and ticks[-1] == f"{hi:.3g}"


def test_the_cam_figure_has_one_colour_bar_naming_the_method(passes):
    found, shown = passes
    cams = {m: p.cam(default_cam_block(p.blocks), "gradcampp", m) for m, p in found.items()}
    (bar,) = colour_bars(cam_export("sample", shown, cams, 0.4, "viridis").figure())
    assert "Grad-CAM++" in bar.ax.get_xlabel() and "99th percentile" in bar.ax.get_xlabel()
    assert bar.cmap.name == "viridis"
