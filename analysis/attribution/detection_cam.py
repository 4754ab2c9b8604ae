"""Class activation maps of one detection: the SCNet paper's Figure 1, done on a detector's detections.

A whole detector (models/detector.py: backbone, feature pyramid, FCOS head) is run once on an image
with every backbone block and every pyramid level (FPN P3..FPN P7) recorded; the gradient of one detection's
score (what the detector reports: sqrt(sigmoid(class logit) x sigmoid(centre-ness)) at the place that
produced it) is taken at all of them, so a CAM of any method at any block or level needs no other
pass. Which detection: the one of the asked class that overlaps the asked box most (IoU >= 0.5), the
highest-scoring such detection, as COCO's matching would pair it with that object; with no box, the
detector's top detection.

The detector resizes the image itself (to its training size) and pads it to a multiple of 32; block
outputs and gradients are cropped to the image before the CAM, and the CAM is resized to the image as
given, so boxes and CAMs share the image's own pixel coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fishspine.analysis.attribution.cam import CamResult, cam_from_gradients, finish_cam
from fishspine.models.detector import DetectorSpec, pyramid_names

MIN_IOU = 0.5  # COCO's (and TIDE's foreground) threshold for "the same object"


@dataclass(frozen=True)
class Detection:
    """One detection: its box (x0, y0, x1, y1) in the image's pixels, label, category name and score."""

    box: tuple[float, float, float, float]
    label: int
    category: str
    score: float

    @property
    def coco_box(self) -> list[float]:
        """[x, y, width, height], as in COCO files."""
        x0, y0, x1, y1 = self.box
        return [x0, y0, x1 - x0, y1 - y0]

    def describe(self) -> str:
        x, y, w, h = (round(v) for v in self.coco_box)
        return f"{self.category} {self.score:.2f} at [{x}, {y}, {w}, {h}]"


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pick_detection(
    detections: Sequence[Detection], box: Sequence[float] | None, label: int | None, min_iou: float = MIN_IOU
) -> int | None:
    """Index of the detection a CAM is taken of (see the module's docstring), or None when none fits."""
    if not detections:
        return None
    if box is None:
        candidates = [i for i, d in enumerate(detections) if label is None or d.label == label]
    else:
        candidates = [
            i
            for i, d in enumerate(detections)
            if (label is None or d.label == label) and box_iou(d.box, box) >= min_iou
        ]
    return max(candidates, key=lambda i: detections[i].score) if candidates else None


@dataclass
class DetectorPass:
    """A detector's detections on one image and the gradient of one detection's score at every layer."""

    image_size: tuple[int, int]  # (H, W) of the image as given
    detections: list[Detection]
    target: Detection | None  # the detection whose score was differentiated; None: nothing fitted (or cam=False)
    layers: list[str]  # backbone blocks, then FPN P3..FPN P7
    outputs: dict[str, torch.Tensor] = field(repr=False)  # layer -> (C, h, w), cropped to the image
    grads: dict[str, torch.Tensor] = field(repr=False)

    @property
    def source_level(self) -> str | None:
        """The pyramid level the target detection came from ("FPN P3".."FPN P7"): the highest level its
        score has a gradient at. The head reads each level on its own; P6 and P7 are computed from P5 (or,
        in SpineNet, are the backbone's own), so a detection from P6 or P7 also has a gradient at the levels
        it was computed from, one from P3-P5 at its own level only. None without a target."""
        for name in reversed(pyramid_names()):
            g = self.grads.get(name)
            if g is not None and bool(g.abs().max() > 0):
                return name
        return None

    def default_layer(self, blocks) -> str:
        """Where a detection CAM is taken unless asked: the level the detection came from (its own evidence;
        the last stride-32 block's CAM of a small object is often constant), else the backbone's default."""
        from fishspine.analysis.attribution.engine import default_cam_block

        return self.source_level or default_cam_block(blocks)

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded outputs and gradients."""
        return sum(t.numel() * t.element_size() for d in (self.outputs, self.grads) for t in d.values())

    def cam(self, layer: str, method: str = "gradcam", model: str = "", scaling: str = "percentile") -> CamResult:
        """The CAM of the target detection's score at `layer` (a block name or FPN P3..FPN P7)."""
        if self.target is None:
            raise ValueError(f"{model or 'the detector'}: no detection to take a CAM of")
        if layer not in self.outputs:
            raise ValueError(
                f"no layer {layer!r}; the detector's layers are its blocks and {', '.join(pyramid_names())}"
            )
        raw = cam_from_gradients(self.outputs[layer], self.grads[layer], method)
        done = finish_cam(raw, self.image_size, scaling)
        return CamResult(
            model,
            layer,
            method,
            self.target.label,
            done.peak,
            done.cam,
            raw.detach().float().cpu().numpy(),
            scaling,
            done.hi,
            done.constant,
            target=f"detection: {self.target.describe()}",
            box=self.target.box,
        )


def _crop(t: torch.Tensor, shown: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """The part of a (C, h, w) map over the image, not over the detector's padding."""
    h, w = t.shape[-2:]
    rows = max(1, math.ceil(h * shown[0] / padded[0]))
    cols = max(1, math.ceil(w * shown[1] / padded[1]))
    return t[..., :rows, :cols].clone()  # not a view: the padded map is not kept alive


def detector_pass(
    detector: torch.nn.Module,
    spec: DetectorSpec,
    pixels: np.ndarray,
    box: Sequence[float] | None = None,
    label: int | None = None,
    min_iou: float = MIN_IOU,
    cam: bool = True,
) -> DetectorPass:
    """Run `detector` on RGB uint8 `pixels` (H, W, 3) and take the gradient of one detection's score
    (the one `pick_detection` chooses for `box` (x0, y0, x1, y1) and `label`) at every layer. With
    `cam=False` only the detections, without gradients (no target, no maps held)."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"an RGB image of shape (H, W, 3) is needed, not {pixels.shape}")
    body = detector.backbone.body
    device = next(detector.parameters()).device
    x = torch.from_numpy(np.array(pixels, copy=True)).to(device).permute(2, 0, 1).float() / 255
    seen: dict = {}
    hooks = [
        detector.transform.register_forward_hook(lambda _m, _i, out: seen.__setitem__("images", out[0])),
        detector.backbone.register_forward_hook(lambda _m, _i, out: seen.__setitem__("pyramid", out)),
    ]
    detector.eval()
    try:
        with torch.set_grad_enabled(cam), body.capture() as cap:
            out = detector([x])[0]
            names = list(cap.outputs)
            tensors = [cap.outputs[n] for n in names]
            levels = list(seen["pyramid"].values())
    finally:
        for h in hooks:
            h.remove()
    detections = [
        Detection(tuple(float(v) for v in b), int(lbl), spec.name_of(int(lbl)), float(s))
        for b, lbl, s in zip(out["boxes"].tolist(), out["labels"].tolist(), out["scores"].detach().tolist())
    ]
    layers = names + pyramid_names()[: len(levels)]
    pick = pick_detection(detections, box, label, min_iou) if cam else None
    image_size = (int(pixels.shape[0]), int(pixels.shape[1]))
    if pick is None:
        return DetectorPass(image_size, detections, None, layers, {}, {})
    grads = torch.autograd.grad(out["scores"][pick], tensors + levels, allow_unused=True)
    shown = tuple(int(v) for v in seen["images"].image_sizes[0])
    padded = tuple(int(v) for v in seen["images"].tensors.shape[-2:])
    outputs, gradients = {}, {}
    for name, t, g in zip(layers, tensors + levels, grads):
        a = t[0].detach()
        outputs[name] = _crop(a, shown, padded)
        gradients[name] = _crop(torch.zeros_like(a) if g is None else g[0].detach(), shown, padded)
    return DetectorPass(image_size, detections, detections[pick], layers, outputs, gradients)
