"""Integrated Gradients and Occlusion as input attributions: split into steps without changing the answer,
complete, pointing at the evidence, cached by the engine, cancellable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fishspine.analysis.attribution.engine import AnalysisEngine
from fishspine.analysis.attribution.input_attribution import (
    black_baseline,
    input_attribution_job,
    integrated_gradients_segments,
    occlusion_bands,
    target_function,
)
from fishspine.analysis.images import sample_image
from fishspine.analysis.jobs import JobCancelled, Progress, run_job
from fishspine.models import create_model

REGION = (slice(8, 16), slice(20, 30))  # rows, columns where the toy classifier's evidence lies


class SmoothNet(nn.Module):
    """A small smooth classifier (softplus), so the IG integral is well approximated by few steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.softplus(self.conv2(nn.functional.softplus(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


class RegionNet(nn.Module):
    """Class 0 is scored only from REGION (a fixed edge filter's response there); class 1 from everything."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 27)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        response = nn.functional.softplus(self.conv(x))[:, 0]
        mask = torch.zeros_like(response)
        mask[:, REGION[0], REGION[1]] = 1
        return torch.stack([(response * mask).sum(dim=(1, 2)), 0.01 * response.mean(dim=(1, 2))], dim=1)


def _image(size: int = 40, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(1, 3, size, size)


def test_segmented_ig_equals_one_captum_call_and_is_complete():
    from captum.attr import IntegratedGradients

    model, x = SmoothNet().eval(), _image()
    f, cls = target_function(model, x)
    base = black_baseline(x)
    steps = []
    segmented = run_job(integrated_gradients_segments(f, x, base, steps=48, segments=6), steps.append)
    assert [p.done for p in steps] == list(range(7)) and {p.total for p in steps} == {6}
    one = IntegratedGradients(f).attribute(x, baselines=base, n_steps=48, method="riemann_middle")
    torch.testing.assert_close(segmented, one, rtol=1e-4, atol=1e-4 * float(one.abs().max()))
    with torch.no_grad():
        gap = float(f(x) - f(base))
    assert abs(float(segmented.sum()) - gap) < 1e-2 * abs(gap), "completeness: the attributions sum to f(x) - f(b)"


def test_ig_steps_that_do_not_split_are_refused():
    model, x = SmoothNet().eval(), _image()
    f, _ = target_function(model, x)
    with pytest.raises(ValueError, match="cannot be split into 5 segments"):
        run_job(integrated_gradients_segments(f, x, black_baseline(x), steps=48, segments=5))


@pytest.mark.parametrize("window, stride", [(8, 4), (10, 3), (7, 7)])
def test_occlusion_row_by_row_equals_one_captum_call(window, stride):
    from captum.attr import Occlusion

    model, x = SmoothNet().eval(), _image(36)
    f, _ = target_function(model, x)
    steps = []
    banded = run_job(occlusion_bands(f, x, window, stride), steps.append)
    with torch.no_grad():
        one = Occlusion(f).attribute(
            x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0
        )
    assert len(steps) > 3, "a progress step per row of windows"
    torch.testing.assert_close(banded, one, rtol=1e-4, atol=1e-4 * float(one.abs().max()))


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_the_attribution_lies_where_the_evidence_is(method):
    x = torch.full((1, 3, 40, 40), -1.0)
    x[:, :, 4:36, 4:36] = 1.0  # the evidence region and plenty of bright decoys around it
    result = run_job(
        input_attribution_job(RegionNet().eval(), x, method, class_index=0, steps=16, segments=4, window=4, stride=2)
    )
    cam = result.cam.astype(np.float32)
    assert result.block == "input" and result.method == method and result.class_index == 0
    assert cam.shape == (40, 40) and cam.max() == pytest.approx(1.0, abs=1e-3)
    row, col = np.unravel_index(int(cam.argmax()), cam.shape)
    assert REGION[0].start - 2 <= row < REGION[0].stop + 2 and REGION[1].start - 2 <= col < REGION[1].stop + 2
    near = np.zeros_like(cam, dtype=bool)  # the region, grown by what a window touching it covers
    near[REGION[0].start - 4 : REGION[0].stop + 4, REGION[1].start - 4 : REGION[1].stop + 4] = True
    assert cam[~near].sum() < 1e-3 * cam[near].sum(), "nothing outside the evidence"


def test_a_backbone_without_classifier_is_attributed_its_feature_energy():
    model = create_model("spinenet49S", width=0.25).eval()
    x = _image(64)
    result = run_job(input_attribution_job(model, x, "integrated_gradients", steps=4, segments=2))
    assert result.class_index is None and result.target_label == "feature energy" and result.raw_max > 0


def test_bad_requests_are_refused_clearly():
    model, x = SmoothNet().eval(), _image()
    with pytest.raises(ValueError, match="use one of integrated_gradients, occlusion"):
        run_job(input_attribution_job(model, x, "saliency"))
    with pytest.raises(ValueError, match="class 9 is out of range"):
        run_job(input_attribution_job(model, x, "occlusion", class_index=9))


def test_the_engine_caches_attributions_and_forgets_them_with_the_model():
    model = SmoothNet().eval()
    model.blocks = ()  # the engine only keys by the model's identity
    other = SmoothNet().eval()
    pixels = sample_image(48)
    engine = AnalysisEngine()
    key = engine.key(model, "img", size=32)
    options = {"steps": 4, "segments": 2}
    first = run_job(engine.attribution_job(model, pixels, key, "integrated_gradients", "a", **options))
    held = engine.nbytes
    assert engine.attributions_run == 1 and held >= first.cam.nbytes
    again = engine.attribution_job(model, pixels, key, "integrated_gradients", "renamed", **options)
    with pytest.raises(StopIteration) as stop:
        next(again)  # held: returned at once, no step
    assert stop.value.value.model == "renamed" and np.array_equal(stop.value.value.cam, first.cam)
    assert engine.attributions_run == 1
    run_job(engine.attribution_job(other, pixels, engine.key(other, "img", size=32), "occlusion", "b", window=8))
    assert engine.attributions_run == 2 and engine.nbytes > held
    engine.forget(model=model)
    assert engine.cached_attribution(key, "integrated_gradients", **options) is None
    assert engine.cached_attribution(engine.key(other, "img", size=32), "occlusion", window=8) is not None
    engine.forget(image="img")
    assert engine.nbytes == 0


def test_a_cancelled_attribution_is_not_kept():
    model = SmoothNet().eval()
    engine = AnalysisEngine()
    key = engine.key(model, "img", size=32)
    seen: list[Progress] = []
    with pytest.raises(JobCancelled):
        run_job(
            engine.iter_attributions(
                {"a": model}, sample_image(48), "img", "integrated_gradients", size=32, steps=8, segments=4
            ),
            seen.append,
            cancelled=lambda: len(seen) >= 2,
        )
    assert engine.cached_attribution(key, "integrated_gradients", steps=8, segments=4) is None
    assert engine.attributions_run == 0 and engine.nbytes == 0
    done = run_job(
        engine.iter_attributions(
            {"a": model}, sample_image(48), "img", "integrated_gradients", size=32, steps=8, segments=4
        ),
        seen.append,
    )
    assert list(done) == ["a"] and seen[-1] == Progress(4, 4, "done")


def test_attributions_share_the_engines_byte_budget():
    model = SmoothNet().eval()
    pixels = sample_image(48)
    engine = AnalysisEngine()
    keys = [engine.key(model, f"img{i}", size=32) for i in range(3)]
    for key in keys[:2]:
        run_job(engine.attribution_job(model, pixels, key, "occlusion", window=8))
    one = engine.nbytes // 2
    engine.max_bytes = 2 * one  # room for two maps: the least recently used goes when a third comes
    assert engine.cached_attribution(keys[0], "occlusion", window=8) is not None  # now the most recently used
    run_job(engine.attribution_job(model, pixels, keys[2], "occlusion", window=8))
    assert engine.nbytes == 2 * one
    assert engine.cached_attribution(keys[1], "occlusion", window=8) is None
    assert engine.cached_attribution(keys[0], "occlusion", window=8) is not None
