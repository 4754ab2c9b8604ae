"""Input attributions from captum: Integrated Gradients and Occlusion, as jobs with progress and cancel.

The CAMs (analysis/attribution/cam.py) weigh one block's output and are derived from the engine's one
cached pass. These attribute the target to the input pixels themselves and need many passes (IG a
forward and backward per step along a path, Occlusion a forward per occluded window), so they run
on request as jobs (analysis/jobs.py), each split into steps that report progress and can be
cancelled between them. The result is a `CamResult` at block "input", drawn and exported like a CAM.

The target is the one the CAMs use (analysis/attribution/targets.py): the class score for a model
with a classifier (the top class when none is asked, fixed on the unperturbed image), feature
energy for a backbone without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fishspine.analysis.attribution.cam import CamResult, finish_cam
from fishspine.analysis.attribution.targets import feature_energy, target_of
from fishspine.analysis.images import IMAGENET_MEAN, IMAGENET_STD
from fishspine.analysis.jobs import Job, Progress
from fishspine.analysis.options import INPUT_METHODS

INPUT_BLOCK = "input"  # the CamResult.block of an input attribution
DEFAULT_IG_STEPS = 64
DEFAULT_IG_SEGMENTS = 8
# Rules under which IG over the whole path equals the sum of IG over J equal segments with n/J steps
# each, point for point: their evaluation points and weights are those of n equal sub-intervals.
# (Gauss-Legendre, captum's default, has no such split: its nodes depend on n.)
IG_RULES = ("riemann_middle", "riemann_left", "riemann_right")
OCCLUSION_WINDOWS_PER_SIDE = 12  # default window: the longer side over this
OCCLUSION_BATCH = 16  # occluded copies per forward


def black_baseline(x: torch.Tensor) -> torch.Tensor:
    """The black image in the model's normalised input space: IG's baseline (Sundararajan et al. 2017)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((0 - mean) / std).expand_as(x).contiguous()


def target_function(
    model: torch.nn.Module, x: torch.Tensor, class_index: int | None = None, precision: str = "float32"
) -> tuple[Callable[[torch.Tensor], torch.Tensor], int | None]:
    """(f: batch -> target per image (N,), class used or None for feature energy), the class fixed on `x`."""
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        _, class_index = target_of(model(x), class_index, "score")  # the top class; a bad index raises here

    def f(batch: torch.Tensor) -> torch.Tensor:
        with autocast:
            out = model(batch)
        if not torch.is_tensor(out):
            return feature_energy(out)
        return out.float()[:, class_index]

    return f, class_index


def integrated_gradients_segments(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baseline: torch.Tensor,
    steps: int = DEFAULT_IG_STEPS,
    segments: int = DEFAULT_IG_SEGMENTS,
    rule: str = "riemann_middle",
    batch: int | None = None,
) -> Job[torch.Tensor]:
    """A job: captum's Integrated Gradients of `f` from `baseline` to `x`, one captum call per path segment.

    IG is additive along the path: IG(b -> x) = sum_j IG(p_j -> p_j+1) with p_j = b + j/J (x - b), so
    the segments' attributions add up to the whole path's (exactly, for the rules in IG_RULES).
    """
    from captum.attr import IntegratedGradients

    if rule not in IG_RULES:
        raise ValueError(f"unknown IG rule {rule!r}; use one of {', '.join(IG_RULES)} (they split exactly)")
    if segments < 1 or steps % segments or steps // segments < 2:
        raise ValueError(f"{steps} IG steps cannot be split into {segments} segments of at least 2 equal steps")
    ig = IntegratedGradients(f)
    total = torch.zeros_like(x)
    yield Progress(0, segments, "integrated gradients")
    for j in range(segments):
        start = baseline + (j / segments) * (x - baseline)
        end = baseline + ((j + 1) / segments) * (x - baseline)
        total += ig.attribute(
            end, baselines=start, n_steps=steps // segments, method=rule, internal_batch_size=batch
        ).detach()
        yield Progress(j + 1, segments, f"integrated gradients: segment {j + 1} of {segments}")
    return total


def occlusion_window(size: tuple[int, int]) -> tuple[int, int]:
    """(window side, stride) for an image of `size`: a twelfth of the longer side, half-overlapping."""
    window = max(2, min(min(size), round(max(size) / OCCLUSION_WINDOWS_PER_SIDE)))
    return window, max(1, window // 2)


def occlusion_bands(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    window: int,
    stride: int,
    baseline: float = 0.0,
    batch: int = OCCLUSION_BATCH,
) -> Job[torch.Tensor]:
    """A job: captum's Occlusion of `f` at `x` with square windows, one captum call per row of windows.

    Each call sees only the strip of rows one row of windows covers (pasted back into `x` before the
    model runs), so its windows are exactly that row's windows of a whole-image call. captum averages
    the windows covering a pixel; within one strip every covered pixel is covered by the same columns
    of windows as in the whole image, so the whole-image average is the mean of the strips' results
    over the strips that cover the row.
    """
    from captum.attr import Occlusion

    h, w = x.shape[-2:]
    if not (1 <= stride <= window <= min(h, w)):
        raise ValueError(
            f"occlusion window {window} and stride {stride} do not fit a {h}x{w} image "
            "(need 1 <= stride <= window <= the shorter side)"
        )
    rows = math.ceil((h - window) / stride) + 1  # window positions down the image, the last one cut off
    summed = torch.zeros_like(x)
    covering = torch.zeros(h, device=x.device, dtype=x.dtype)
    yield Progress(0, rows, "occlusion")
    for i in range(rows):
        top = i * stride
        bottom = min(top + window, h)

        def strip_f(strip: torch.Tensor, top=top, bottom=bottom) -> torch.Tensor:
            full = x.expand(strip.shape[0], -1, -1, -1).clone()
            full[:, :, top:bottom] = strip
            return f(full)

        occ = Occlusion(strip_f)
        with torch.no_grad():
            part = occ.attribute(
                x[:, :, top:bottom].contiguous(),
                sliding_window_shapes=(3, bottom - top, window),
                strides=(3, stride, stride),
                baselines=baseline,
                perturbations_per_eval=batch,
            )
        summed[:, :, top:bottom] += part
        covering[top:bottom] += 1
        yield Progress(i + 1, rows, f"occlusion: row {i + 1} of {rows}")
    return summed / covering.view(1, 1, h, 1)


def attribution_map(attributions: torch.Tensor) -> torch.Tensor:
    """The (H, W) map of (1, 3, H, W) input attributions: summed over colour, positive part kept.

    The colour channels are summed because a pixel's share of the target is the sum of its channels'
    (IG's completeness holds per input value); the positive part is kept, not the absolute value,
    because it is the evidence *for* the target: what Zeiler & Fergus (2014) show as occlusion maps
    (occluding the object lowers its class score) and what the CAMs beside it show (they ReLU away
    negative evidence). The absolute value would mix in evidence against the class, which points
    elsewhere.
    """
    return attributions[0].float().sum(0).clamp(min=0)


def input_attribution_job(
    model: torch.nn.Module,
    x: torch.Tensor,
    method: str,
    class_index: int | None = None,
    label: str = "",
    precision: str = "float32",
    steps: int = DEFAULT_IG_STEPS,
    segments: int = DEFAULT_IG_SEGMENTS,
    window: int | None = None,
    stride: int | None = None,
) -> Job[CamResult]:
    """A job: the input attribution of `method` (INPUT_METHODS) for image x (1, 3, H, W) on the model's device.

    integrated_gradients: from the black image, `steps` steps in `segments` captum calls (a progress
    step each); occlusion: grey (the mean colour, zero in the normalised input) square windows of side
    `window` every `stride` pixels (default from `occlusion_window`), a progress step per row of windows.
    """
    if method not in INPUT_METHODS:
        raise ValueError(f"unknown input attribution {method!r}; use one of {', '.join(INPUT_METHODS)}")
    if x.ndim != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"input attribution takes one RGB image as (1, 3, H, W), not {tuple(x.shape)}")
    f, used = target_function(model, x, class_index, precision)
    if method == "integrated_gradients":
        attributions = yield from integrated_gradients_segments(f, x, black_baseline(x), steps, segments)
    else:
        default_window, default_stride = occlusion_window(tuple(x.shape[-2:]))
        window = window or default_window
        attributions = yield from occlusion_bands(f, x, window, stride or min(default_stride, window))
    raw = attribution_map(attributions)
    done = finish_cam(raw, tuple(x.shape[-2:]), "minmax")  # the view rescales it (CamResult.rescaled)
    return CamResult(
        label, INPUT_BLOCK, method, used, done.peak, done.cam, raw.cpu().numpy(), "minmax", done.hi, done.constant
    )
