"""A synthetic `fishspine study` folder in the exact layout of STUDY_SPEC.md, for figure and app tests.

The numbers are made up but shaped like a real study's: gradient norms that change by orders of
magnitude with depth, Gaussian ERF blobs that widen with the stride (their radii measured on the
maps written), a CKA matrix computed (linear CKA) from simulated features of a shared input, and
deletion/insertion curves with their trapezoid AUCs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: (label, variant, family, [(block name, level, channels), ...] in forward order)
MODELS = (
    (
        "ResNet-50",
        "resnet50",
        "resnet",
        [("stem", 2, 64), ("layer1.0", 2, 256), ("layer1.1", 2, 256), ("layer2.0", 3, 512), ("layer2.1", 3, 512)]
        + [("layer3.0", 4, 1024), ("layer3.1", 4, 1024), ("layer4.0", 5, 2048), ("layer4.1", 5, 2048)],
    ),
    (
        "FishNet-99",
        "fishnet99",
        "fishnet",
        [("stem", 2, 64), ("tail.0", 3, 128), ("tail.1", 4, 256), ("tail.2", 5, 512), ("bridge", 5, 512)]
        + [("body.0", 4, 512), ("body.1", 3, 384), ("body.2", 2, 256), ("head.0", 3, 320), ("head.1", 4, 832)]
        + [("head.2", 5, 1600), ("score", 5, 1056)],
    ),
    (
        "SCNet-50",
        "scnet50",
        "scnet",
        [("stem", 2, 64), ("layer1", 2, 256), ("layer2.0", 3, 512), ("layer2.1", 3, 512), ("layer3", 4, 1024)]
        + [("layer4.0", 5, 2048), ("layer4.1", 5, 2048)],
    ),
)
LEVELS = (3, 4, 5)
MAP = 64
STEPS = 16
T95 = 2.0096  # Student t, 0.975 quantile, 49 degrees of freedom (50 images)


def _interval(rng: np.random.Generator, mean: float, rel_sd: float, n: int = 50) -> dict:
    half = T95 * abs(mean) * rel_sd * rng.uniform(0.5, 1.5) / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def _null(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _null(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_null(x) for x in v]
    return v


def _mass_radius(a: np.ndarray, centre: tuple[float, float], fraction: float) -> float:
    yy, xx = np.indices(a.shape)
    d = np.hypot(yy - centre[0], xx - centre[1]).ravel()
    order = np.argsort(d, kind="stable")
    mass = np.cumsum(a.ravel()[order])
    return float(d[order][np.searchsorted(mass, fraction * mass[-1])])


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def write_synthetic_study(
    folder: str | Path,
    models: int = 3,
    metrics: tuple[str, ...] = ("traces", "erf", "activations", "faithfulness", "cka"),
    seed: int = 0,
) -> dict:
    """Write summary.json, erf.npz and cka.npz of `models` (1..3) synthetic backbones into `folder`;
    returns the summary as written (NaN as None)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict = {
        "format": "fishspine-study",
        "version": 1,
        "config": {
            "images": 50,
            "size": MAP,
            "batch": 8,
            "world_size": 2,
            "device": "cpu",
            "metrics": list(metrics),
            "source": "synthetic",
            "confidence": 0.95,
            "deletion_steps": STEPS,
            "blur_sigma": 5.0,
            "seconds": 12.3,
        },
        "models": {},
    }
    maps, feats, cka_blocks = {}, [], []
    # A shared trajectory of features through depth: blocks at the same relative depth of two models
    # are similar (high CKA), as in real backbones trained on the same data.
    shared = [rng.normal(size=(64, 12))]
    for _ in range(11):
        shared.append(np.tanh(shared[-1] @ rng.normal(scale=0.6, size=(12, 12))) + 0.4 * shared[-1])
    for i, (label, variant, family, blocks) in enumerate(MODELS[:models]):
        e: dict = {"variant": variant, "family": family, "classifier": family != "fishnet"}
        e["blocks"] = [{"name": b, "role": "stage", "level": lv, "channels": c} for b, lv, c in blocks]
        e["blocks"][0]["role"] = "stem"
        n = len(blocks)
        if "traces" in metrics:
            # Gradients shrink towards the input by a model-dependent factor per block (vanishing).
            decay = [0.45, 0.8, 0.6][i]
            out = {b: 0.05 * decay ** (n - 1 - k) for k, (b, _, _) in enumerate(blocks)}
            tb = {}
            for b, lv, _ in blocks:
                w = math.nan if b == "score" else 3 * out[b] * rng.uniform(0.5, 2)  # a block without weights
                tb[b] = {"level": lv, "output": _interval(rng, out[b], 0.6), "weight": _interval(rng, w, 0.8)}
            # One wide interval whose lower bound is below 0 (few images, a noisy block).
            tb[blocks[1][0]]["output"]["lo"] = -tb[blocks[1][0]]["output"]["mean"]
            order = [b for b, _, _ in reversed(blocks)]
            ratio_o = out[order[-1]] / out[order[0]]
            ratio = {"output": _interval(rng, ratio_o, 0.5), "weight": _interval(rng, 2 * ratio_o, 0.7)}
            e["traces"] = {"loss": "cross_entropy", "order": order, "blocks": tb, "ratio": ratio}
        if "erf" in metrics:
            e["erf"] = {}
            for lv in LEVELS:
                stride, h = 2**lv, MAP // 2**lv
                c = ((h // 2 + 0.5) * MAP / h - 0.5,) * 2
                sigma = [3.0, 2.5, 3.5][i] * 2 ** (lv - 2)
                yy, xx = np.indices((MAP, MAP))
                a = np.exp(-((yy - c[0] - 1) ** 2 + (xx - c[1] + 1) ** 2) / (2 * sigma**2))
                a = (a * rng.uniform(0.8, 1.2, a.shape) * 1e-3).astype(np.float32)
                total = a.sum()
                com = [float((a * yy).sum() / total), float((a * xx).sum() / total)]
                key = f"m{i}_level{lv}"
                maps[key] = a
                e["erf"][str(lv)] = {
                    "stride": stride,
                    "map_hw": [h, h],
                    "centre": list(c),
                    "centre_of_mass": com,
                    "radius_50": _mass_radius(a, c, 0.5),
                    "radius_90": _mass_radius(a, c, 0.9),
                    "npz_key": key,
                }
        if "activations" in metrics:
            e["activations"] = {
                b: {
                    "mean_abs": _interval(rng, 0.2 * 1.4**k * rng.uniform(0.7, 1.3), 0.3),
                    "zero_fraction": _interval(rng, float(rng.uniform(0.25, 0.7)), 0.2),
                    "dead_channels": int(rng.integers(0, 4)),
                    "channels": ch,
                }
                for k, (b, _, ch) in enumerate(blocks)
            }
        if "faithfulness" in metrics:
            fr = np.linspace(0, 1, STEPS + 1)
            dele = 0.85 * np.exp(-fr * [6, 3, 4.5][i]) + 0.05
            ins = 0.9 - 0.8 * np.exp(-fr * [5, 2.5, 4][i])
            e["faithfulness"] = {
                "block": blocks[-1][0],
                "score": "probability",
                "deletion_auc": _interval(rng, float(np.trapezoid(dele, fr)), 0.4),
                "insertion_auc": _interval(rng, float(np.trapezoid(ins, fr)), 0.3),
                "fractions": fr.tolist(),
                "deletion_curve": dele.tolist(),
                "insertion_curve": ins.tolist(),
            }
        summary["models"][label] = e
        for k, (b, _, _) in enumerate(blocks):
            t = round(k * (len(shared) - 1) / max(n - 1, 1))
            feats.append(shared[t] @ rng.normal(size=(12, 12)) + 0.8 * rng.normal(size=(64, 12)))
            cka_blocks.append([label, b])
    if "cka" in metrics:
        matrix = np.array([[_linear_cka(a, b) for b in feats] for a in feats])
        np.savez(folder / "cka.npz", cka=matrix)
        summary["cka"] = {"blocks": cka_blocks, "npz_key": "cka", "batches": 7}
    if maps:
        np.savez(folder / "erf.npz", **maps)
    summary = _null(summary)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    return summary
