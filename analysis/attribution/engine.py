"""The analysis engine: one pass per (model, image, input size, precision, target), everything else derived.

A pass runs one forward with every block captured, the gradient of the target score at every block
output (what Grad-CAM, Grad-CAM++ and LayerCAM need, at any block) and the gradient of the trace's
loss (its norm at every block output and at every block's weights). The pass is kept in a cache
bounded in bytes, least recently used first. Activation maps under any reduction and normalisation,
CAMs of any method at any block and gradient traces of outputs or weights are derived from it with
no other pass. The app and every command of the command line compute through this module.

Input attributions (Integrated Gradients, Occlusion: analysis/attribution/input_attribution.py) need
many passes of their own; the engine runs them as jobs on request and keeps their results beside the
passes, in the same byte budget.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from fishspine.analysis.attribution.activations import ActivationResult, BlockMap, block_map, normalise, sample_rows
from fishspine.analysis.attribution.cam import CamResult, cam_from_gradients, finish_cam
from fishspine.analysis.attribution.gradients import GradientTrace
from fishspine.analysis.attribution.targets import target_of
from fishspine.analysis.jobs import Job, Progress
from fishspine.analysis.options import (
    CAM_METHODS,
    DEFAULT_INPUT_SIZE,
    INPUT_METHODS,
    NORMALISATIONS,
    PRECISIONS,
    REDUCTIONS,
)
from fishspine.models import Backbone, BlockInfo

if TYPE_CHECKING:
    from fishspine.analysis.attribution.detection_cam import DetectorPass
    from fishspine.models.detector import DetectorSpec

DEFAULT_CACHE_BYTES = 1 << 30


def default_cam_block(blocks: Iterable[BlockInfo]) -> str:
    """The last block at stride 32 (or the coarsest below it): where Grad-CAM is usually taken."""
    blocks = list(blocks)
    level = max(b.level for b in blocks if b.level <= 5)
    return [b.name for b in blocks if b.level == level][-1]


@dataclass(frozen=True)
class PassKey:
    """What decides a pass: anything else is derived from it."""

    model: int  # id() of the model object; entries go when the model is forgotten or collected
    image: str
    size: int
    precision: str
    class_index: int | None  # as asked: None is the top prediction (or feature energy)
    loss: str


@dataclass(eq=False)
class ModelPass:
    """What one pass of one model on one image captured (image 0 of the batch, detached)."""

    key: PassKey
    blocks: tuple[BlockInfo, ...]
    image_size: tuple[int, int]
    outputs: dict[str, torch.Tensor]  # block -> (C, h, w)
    target_grads: dict[str, torch.Tensor]  # block -> d(target score)/d(output), (C, h, w)
    output_grad_norm: dict[str, float]  # block -> ||d(loss)/d(output)||
    weight_grad_norm: dict[str, float]  # block -> ||d(loss)/d(weights)||, nan without weights
    class_index: int | None  # the class used (None: feature energy)
    loss: str  # the trace's loss as used ("feature_energy" for backbones without a classifier)
    seconds: float
    _derived: dict = field(default_factory=dict, repr=False)  # memo: reduction -> raw block maps
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes held: captured tensors and derived maps."""
        tensors = sum(t.numel() * t.element_size() for d in (self.outputs, self.target_grads) for t in d.values())
        maps = sum(b.source.nbytes for maps in self._derived.values() for b in maps)
        return tensors + maps

    def block(self, name: str) -> BlockInfo:
        """The block called `name`; KeyError naming the model's blocks otherwise."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(f"no block {name!r}; blocks are {', '.join(b.name for b in self.blocks)}")

    # ---------------------------------------------------------------- derivations
    def block_maps(self, reduction: str = "mean_abs", k: int = 8) -> list[BlockMap]:
        """Every block's map under `reduction`, resized to the image, not yet normalised (memoised)."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
        with self._lock:
            memo = self._derived.get((reduction, k))
            if memo is None:
                memo = [
                    block_map(b, self.outputs[b.name], reduction, self.image_size, k)
                    for b in self.blocks
                    if b.name in self.outputs
                ]
                self._derived[(reduction, k)] = memo
        return memo

    def cam(self, block: str, method: str = "gradcam", label: str = "", scaling: str = "percentile") -> CamResult:
        """The CAM of `method` at `block`, resized to the image and scaled to [0, 1] by `scaling`."""
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; use one of {', '.join(CAM_METHODS)}")
        self.block(block)
        raw = cam_from_gradients(self.outputs[block], self.target_grads[block], method)
        done = finish_cam(raw, self.image_size, scaling)
        return CamResult(
            label,
            block,
            method,
            self.class_index,
            done.peak,
            done.cam,
            raw.cpu().numpy(),
            scaling,
            done.hi,
            done.constant,
        )

    def trace(self, label: str = "") -> GradientTrace:
        """Gradient norms at every block's output and weights, deepest block first."""
        blocks = [b for b in reversed(self.blocks) if b.name in self.output_grad_norm]
        return GradientTrace(
            label,
            self.loss,
            self.class_index,
            [b.name for b in blocks],
            [b.role for b in blocks],
            [b.level for b in blocks],
            [self.output_grad_norm[b.name] for b in blocks],
            [self.weight_grad_norm[b.name] for b in blocks],
        )


def activations(
    passes: Mapping[str, ModelPass],
    reduction: str = "mean_abs",
    normalisation: str = "block",
    k: int = 8,
    scaling: str = "percentile",
) -> dict[str, ActivationResult]:
    """Activation maps of every block of each labelled pass, normalised across them and scaled as asked."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; use one of {', '.join(NORMALISATIONS)}")
    results = {
        label: ActivationResult(
            label, p.image_size, reduction, "block", [replace(b, _map=None) for b in p.block_maps(reduction, k)]
        )
        for label, p in passes.items()
    }
    normalise(list(results.values()), normalisation, scaling)
    return results


# -------------------------------------------------------------------------------------- the pass


def _block_weight_norms(model: Backbone) -> dict[str, float]:
    norms = {}
    for b in model.blocks:
        grads = [p.grad for p in model.block_parameters(b.name) if p.grad is not None]
        norms[b.name] = float(torch.sqrt(sum(g.float().pow(2).sum() for g in grads))) if grads else math.nan
    return norms


def run_pass(model: Backbone, x: torch.Tensor, key: PassKey) -> ModelPass:
    """One forward and the backward passes the views need, for image x (1, 3, H, W) on the model's device."""
    started = time.perf_counter()
    device = x.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=key.precision == "bf16")
    model.zero_grad(set_to_none=True)
    try:
        with torch.enable_grad(), autocast, model.capture(grads=True) as cap:
            out = model(x)
            score, class_index = target_of(out, key.class_index, "score")
            names = list(cap.outputs)
            if class_index is not None and key.loss != "score":
                # The CAMs take the class score's gradient, the trace the loss's: two backward passes.
                grads = torch.autograd.grad(
                    score, [cap.outputs[n] for n in names], retain_graph=True, allow_unused=True
                )
                target_grads = {
                    n: (g if g is not None else torch.zeros_like(cap.outputs[n]))[0].detach()
                    for n, g in zip(names, grads)
                }
                cap.grads.clear()
                loss, _ = target_of(out, class_index, key.loss)
                loss.backward()
                used = key.loss
            else:
                score.backward()
                target_grads = None
                used = "score" if class_index is not None else "feature_energy"
        loss_grads = cap.grads
        if target_grads is None:
            target_grads = {
                n: loss_grads[n][0].detach() if n in loss_grads else torch.zeros_like(cap.outputs[n][0]) for n in names
            }
        out_norms = {n: float(loss_grads[n].float().norm()) if n in loss_grads else 0.0 for n in names}
        weight_norms = _block_weight_norms(model)
        outputs = {n: cap.outputs[n][0].detach() for n in names}
    finally:
        model.zero_grad(set_to_none=True)
    return ModelPass(
        key,
        model.blocks,
        tuple(x.shape[-2:]),
        outputs,
        target_grads,
        out_norms,
        weight_norms,
        class_index,
        used,
        time.perf_counter() - started,
    )


# ------------------------------------------------------------------------------------- the cache


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise, and RSS never drops)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class AnalysisEngine:
    """Runs passes and keeps them, least recently used first, within `max_bytes`.

    Thread-safe: the app runs passes in a worker while the UI thread derives from finished ones.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._passes: OrderedDict[PassKey, ModelPass] = OrderedDict()
        # (pass key, method, options) -> input attribution; far smaller than a pass, far slower to make
        self._attributions: OrderedDict[tuple, CamResult] = OrderedDict()
        # (id of the detector's backbone, image, box, label) -> a detection's pass (detection_cam.py)
        self._detections: OrderedDict[tuple, DetectorPass] = OrderedDict()
        self._lock = threading.RLock()
        # Held while a model runs: a pass's capture hooks must not see an attribution's forwards (the app
        # runs both in workers), so the two take turns, an attribution between its steps.
        self._compute = threading.Lock()
        self.passes_run = 0  # how many passes this engine has computed (not served from the cache)
        self.attributions_run = 0  # likewise for input attributions

    @property
    def nbytes(self) -> int:
        """Bytes held by every cached pass and input attribution."""
        with self._lock:
            return (
                sum(p.nbytes for p in self._passes.values())
                + sum(a.nbytes for a in self._attributions.values())
                + sum(d.nbytes for d in self._detections.values())
            )

    def __len__(self) -> int:
        return len(self._passes)

    @staticmethod
    def key(
        model: Backbone,
        image: str,
        size: int = DEFAULT_INPUT_SIZE,
        precision: str = "float32",
        class_index: int | None = None,
        loss: str = "cross_entropy",
    ) -> PassKey:
        """The cache key of a pass."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        return PassKey(id(model), image, int(size), precision, class_index, loss)

    def cached(self, key: PassKey) -> ModelPass | None:
        """The pass for `key` if it is held (it becomes the most recently used)."""
        with self._lock:
            p = self._passes.get(key)
            if p is not None:
                self._passes.move_to_end(key)
            return p

    def analyse(self, model: Backbone, pixels: np.ndarray, key: PassKey) -> ModelPass:
        """The pass for `key`: from the cache, or run on `pixels` (RGB uint8) resized to key.size."""
        hit = self.cached(key)
        if hit is not None:
            return hit
        from fishspine.analysis.images import resize_longer_side, to_input

        device = next(model.parameters()).device
        x = to_input(resize_longer_side(pixels, key.size), device)
        with self._compute:
            result = run_pass(model, x, key)
        self.passes_run += 1
        self._store(result)
        return result

    def _store(self, result: ModelPass) -> None:
        with self._lock:
            self._passes[result.key] = result
            self.trim()

    def trim(self) -> None:
        """Drop least recently used passes, then attributions, then detection passes, until the cache fits
        `max_bytes` (the newest of each always stays)."""
        dropped = False
        with self._lock:
            total = self.nbytes
            while total > self.max_bytes and len(self._passes) > 1:
                _, old = self._passes.popitem(last=False)
                total -= old.nbytes
                dropped = True
            for held in (self._attributions, self._detections):
                while total > self.max_bytes and len(held) > 1:
                    _, old = held.popitem(last=False)
                    total -= old.nbytes
                    dropped = True
        if dropped:
            _release_freed_memory()

    def forget(self, model: Backbone | None = None, image: str | None = None) -> int:
        """Drop the passes and attributions of `model` and/or of `image` (both None: everything); how many
        passes went."""

        def matches(k: PassKey) -> bool:
            return (model is None or k.model == id(model)) and (image is None or k.image == image)

        with self._lock:
            gone = [k for k in self._passes if matches(k)]
            for k in gone:
                del self._passes[k]
            for k in [k for k in self._attributions if matches(k[0])]:
                del self._attributions[k]
            for k in [k for k in self._detections if (model is None or k[0] == id(model)) and image in (None, k[1])]:
                del self._detections[k]
        if gone:
            _release_freed_memory()
        return len(gone)

    def iter_passes(
        self,
        models: Mapping[str, Backbone],
        pixels: np.ndarray,
        image: str,
        size: int = DEFAULT_INPUT_SIZE,
        precision: str = "float32",
        class_index: int | None = None,
        loss: str = "cross_entropy",
    ) -> Job[dict[str, ModelPass]]:
        """A job: the pass of every labelled model on one image (cached ones are not rerun)."""
        out: dict[str, ModelPass] = {}
        for i, (label, model) in enumerate(models.items()):
            yield Progress(i, len(models), label)
            out[label] = self.analyse(model, pixels, self.key(model, image, size, precision, class_index, loss))
        yield Progress(len(models), len(models), "done")
        return out

    # ------------------------------------------------------------------------ detections
    def detection_pass(
        self,
        detector: torch.nn.Module,
        spec: DetectorSpec,
        pixels: np.ndarray,
        image: str,
        box: tuple[float, float, float, float] | None = None,
        label: int | None = None,
        cam: bool = True,
    ) -> DetectorPass:
        """A whole detector's pass for one detection on `pixels` (see detection_cam.detector_pass; `cam=False`:
        its detections only), held like the other passes; it runs while no other model computation runs."""
        from fishspine.analysis.attribution.detection_cam import detector_pass

        key = (id(detector.backbone.body), image, None if box is None else tuple(box), label, cam)
        with self._lock:
            hit = self._detections.get(key)
            if hit is not None:
                self._detections.move_to_end(key)
                return hit
        with self._compute:
            result = detector_pass(detector, spec, pixels, box, label, cam=cam)
        with self._lock:
            self._detections[key] = result
            self.trim()
        return result

    # ------------------------------------------------------------------------ input attributions
    @staticmethod
    def _attribution_key(key: PassKey, method: str, options: Mapping) -> tuple:
        if method not in INPUT_METHODS:
            raise ValueError(f"unknown input attribution {method!r}; use one of {', '.join(INPUT_METHODS)}")
        return key, method, tuple(sorted(options.items()))

    def cached_attribution(self, key: PassKey, method: str, **options) -> CamResult | None:
        """The input attribution of `method` for `key` (and options) if it is held."""
        akey = self._attribution_key(key, method, options)
        with self._lock:
            hit = self._attributions.get(akey)
            if hit is not None:
                self._attributions.move_to_end(akey)
            return hit

    def attribution_job(
        self, model: Backbone, pixels: np.ndarray, key: PassKey, method: str, label: str = "", **options
    ) -> Job[CamResult]:
        """A job: the input attribution of `method` (INPUT_METHODS) on `pixels` resized to key.size, for
        key's class and precision; a held one is returned at once. `options` go to `input_attribution_job`
        (steps, segments, window, stride) and are part of the cache key."""
        from fishspine.analysis.attribution.input_attribution import input_attribution_job
        from fishspine.analysis.images import resize_longer_side, to_input

        akey = self._attribution_key(key, method, options)
        hit = self.cached_attribution(key, method, **options)
        if hit is not None:
            return replace(hit, model=label)
        device = next(model.parameters()).device
        x = to_input(resize_longer_side(pixels, key.size), device)
        job = input_attribution_job(model, x, method, key.class_index, label, key.precision, **options)
        result = yield from self._taking_turns(job)
        self.attributions_run += 1
        with self._lock:
            self._attributions[akey] = result
            self.trim()
        return result

    def _taking_turns(self, job: Job):
        """`job`, each step run while no other model computation runs (never holding the turn at a yield)."""
        try:
            while True:
                with self._compute:
                    try:
                        step = next(job)
                    except StopIteration as stop:
                        return stop.value
                yield step
        finally:
            job.close()

    def iter_attributions(
        self,
        models: Mapping[str, Backbone],
        pixels: np.ndarray,
        image: str,
        method: str,
        size: int = DEFAULT_INPUT_SIZE,
        precision: str = "float32",
        class_index: int | None = None,
        **options,
    ) -> Job[dict[str, CamResult]]:
        """A job: the input attribution of every labelled model on one image (held ones are not rerun).

        Progress counts every model's steps (the models share the image, so each has as many).
        """
        out: dict[str, CamResult] = {}
        n = total = len(models)
        for i, (label, model) in enumerate(models.items()):
            job = self.attribution_job(
                model, pixels, self.key(model, image, size, precision, class_index), method, label, **options
            )
            for p in _relabelled(job, out, label):
                total = n * p.total
                yield Progress(i * p.total + p.done, total, f"{label}: {p.text}")
        yield Progress(total, total, "done")
        return out


def _relabelled(job: Job[CamResult], out: dict[str, CamResult], label: str):
    """The progress of `job`, its result stored in out[label] when it ends."""
    out[label] = yield from job


@dataclass
class ModelInsight:
    """What the views show of one model for one image: activation maps, its gradient trace and its CAM."""

    activations: ActivationResult
    trace: GradientTrace
    cam: CamResult


def insights(
    passes: Mapping[str, ModelPass],
    reduction: str = "mean_abs",
    normalisation: str = "block",
    cam_method: str = "gradcam",
    cam_blocks: Mapping[str, str] | None = None,
    default_blocks: Mapping[str, str] | None = None,
    shown_rows: int = 0,
    scaling: str = "percentile",
) -> dict[str, ModelInsight]:
    """Every view's result for each labelled pass, derived without another pass.

    `cam_blocks` picks the CAM block per label; otherwise `default_blocks` (per label) or the last
    block at stride 32. Maps are made when first read; the `shown_rows` blocks a gallery shows of
    each model (and the CAM block) are made here, so a worker pays for them rather than the screen.
    """
    acts = activations(passes, reduction, normalisation, scaling=scaling)
    for label, result in acts.items():
        wanted = {result.blocks[i].name for i in sample_rows(len(result.blocks), shown_rows)} if shown_rows else set()
        wanted.add((cam_blocks or {}).get(label, ""))
        for b in result.blocks:
            if b.name in wanted:
                b.map  # noqa: B018 - made now, in the caller's thread
    out = {}
    for label, p in passes.items():
        block = (cam_blocks or {}).get(label) or (default_blocks or {}).get(label) or default_cam_block(p.blocks)
        out[label] = ModelInsight(acts[label], p.trace(label), p.cam(block, cam_method, label, scaling))
    return out
