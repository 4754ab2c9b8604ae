"""A study: every backbone over a set of images, as sums that ranks share out and a resumed run continues.

The ordered image list is cut into chunks of `batch` images; chunk c is computed by rank
c % world_size. Everything a study reports is kept as float64 sums over images (and a channel-wise
maximum for dead channels) in a flat state of named arrays, so ranks reduce it with one all-reduce
per array and a single process gives the same numbers. After each finished chunk a rank writes its
state to OUT/state/, so a stopped study resumes from its last finished chunk (`resume=True`).

Per image and backbone, one engine pass (analysis/attribution/engine.py `run_pass`) gives the
gradient norms of the trace, the block outputs (activation statistics, CKA features) and the
Grad-CAM that deletion/insertion scores; the ERF needs one forward and a backward per output level.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fishspine.analysis.attribution.engine import PassKey, default_cam_block, run_pass
from fishspine.analysis.attribution.targets import feature_energy
from fishspine.analysis.jobs import Job, Progress
from fishspine.analysis.options import DEFAULT_INPUT_SIZE, STUDY_METRICS
from fishspine.analysis.study.cka import cka_from_hsic, hsic_matrix
from fishspine.analysis.study.erf import centre_of_mass, erf_maps, mass_radius, unit_centre
from fishspine.analysis.study.faithfulness import auc, deletion_insertion
from fishspine.analysis.study.statistics import t_interval
from fishspine.models import Backbone
from fishspine.models.atomic_files import atomic_write_bytes

METRICS = STUDY_METRICS
STUDY_FORMAT = "fishspine-study"
STUDY_VERSION = 1
#: The fewest images of a chunk the unbiased HSIC estimator takes (it divides by n - 3).
CKA_MIN_BATCH = 4


class StudyError(ValueError):
    """A study cannot run or resume as asked: the message says what and what to do."""


@dataclass(frozen=True)
class StudyConfig:
    """What a study computes and how."""

    size: int = DEFAULT_INPUT_SIZE
    batch: int = 8
    metrics: tuple[str, ...] = METRICS
    loss: str = "cross_entropy"
    deletion_steps: int = 16
    blur_sigma: float = 5.0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise StudyError(f"unknown metrics {unknown}; use some of {', '.join(METRICS)}")
        if "cka" in self.metrics and self.batch < CKA_MIN_BATCH:
            raise StudyError(f"CKA needs --batch of at least {CKA_MIN_BATCH} (its minibatch estimator)")


@dataclass
class Rank:
    """This process's place in a data-parallel run (rank 0 of 1 without torch.distributed)."""

    rank: int = 0
    world_size: int = 1

    def chunks(self, n_chunks: int) -> list[int]:
        """The chunk indices this rank computes."""
        return list(range(self.rank, n_chunks, self.world_size))


@dataclass
class ModelInfo:
    """What the summary says of a backbone, known before any image."""

    label: str
    variant: str
    family: str
    classifier: bool
    blocks: list[dict]
    cam_block: str
    levels: dict[int, tuple[int, int]] = field(default_factory=dict)  # output level -> map (h, w)


# ------------------------------------------------------------------------------------------ state


class StudyState(dict):
    """Named float64 arrays summed over images; keys ending in "channel_max" are maxima instead."""

    def add_moments(self, key: str, values: np.ndarray | float) -> None:
        """Add each finite value to KEY/n, KEY/sum, KEY/sq (element-wise)."""
        v = np.atleast_1d(np.asarray(values, dtype=np.float64))
        ok = np.isfinite(v)
        self[f"{key}/n"] += ok
        self[f"{key}/sum"] += np.where(ok, v, 0.0)
        self[f"{key}/sq"] += np.where(ok, v * v, 0.0)

    def moments(self, key: str, shape: int | tuple[int, ...] = 1) -> None:
        """Allocate KEY/n, KEY/sum, KEY/sq."""
        for part in ("n", "sum", "sq"):
            self[f"{key}/{part}"] = np.zeros(shape, np.float64)

    def intervals(self, key: str, confidence: float) -> list[dict]:
        """The mean and its t-interval of each element of KEY."""
        n, s, q = (self[f"{key}/{p}"] for p in ("n", "sum", "sq"))
        return [t_interval(int(a), float(b), float(c), confidence).as_dict() for a, b, c in zip(n, s, q)]


def _allocate(infos: Sequence[ModelInfo], config: StudyConfig) -> StudyState:
    state = StudyState()
    for i, info in enumerate(infos):
        m, nb = f"m{i}", len(info.blocks)
        if "traces" in config.metrics:
            for which in ("output", "weight"):
                state.moments(f"{m}/trace/{which}", nb)
                state.moments(f"{m}/trace/ratio_{which}")
        if "activations" in config.metrics:
            state.moments(f"{m}/act/mean_abs", nb)
            state.moments(f"{m}/act/zero_fraction", nb)
            for j, b in enumerate(info.blocks):
                state[f"{m}/act/{j}/channel_max"] = np.full(b["channels"], -np.inf)
        if "erf" in config.metrics:
            for level in info.levels:
                state[f"{m}/erf/{level}"] = np.zeros((config.size, config.size), np.float64)
            state[f"{m}/erf/n"] = np.zeros(1, np.float64)
        if "faithfulness" in config.metrics:
            state[f"{m}/faith/deletion"] = np.zeros(config.deletion_steps + 1, np.float64)
            state[f"{m}/faith/insertion"] = np.zeros(config.deletion_steps + 1, np.float64)
            state.moments(f"{m}/faith/deletion_auc")
            state.moments(f"{m}/faith/insertion_auc")
    if "cka" in config.metrics:
        total = sum(len(info.blocks) for info in infos)
        state["cka/hsic"] = np.zeros((total, total), np.float64)
        state["cka/batches"] = np.zeros(1, np.float64)
    state["images"] = np.zeros(1, np.float64)
    return state


def reduce_state(state: StudyState) -> None:
    """Sum (or take the maximum of) every array across the ranks of torch.distributed, in place."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    for key in sorted(state):
        t = torch.from_numpy(np.ascontiguousarray(state[key]))
        if device is not None:
            t = t.to(device)
        op = dist.ReduceOp.MAX if key.endswith("channel_max") else dist.ReduceOp.SUM
        dist.all_reduce(t, op=op)
        state[key] = t.cpu().numpy()


# ------------------------------------------------------------------------------ state on disk


def _fingerprint(models: Mapping[str, Backbone], images: Sequence[Path], config: StudyConfig) -> str:
    """What a resumed study must share with the stopped one: models (and their weights), images, settings."""
    h = hashlib.sha256()
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    for label, model in models.items():
        checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
        h.update(f"{label}|{model.variant}|{checksum:.12e}".encode())
    for p in images:
        h.update(str(p).encode())
    return h.hexdigest()


def _state_path(out: Path, rank: Rank) -> Path:
    return out / "state" / f"rank{rank.rank}-of-{rank.world_size}.npz"


def _save_state(path: Path, state: StudyState, done: list[int], skipped: list[str], fingerprint: str) -> None:
    buf = io.BytesIO()
    extra = {
        "__done__": np.asarray(done, np.int64),
        "__skipped__": np.asarray(skipped, dtype=str),
        "__fingerprint__": np.asarray(fingerprint),
    }
    np.savez(buf, **state, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _load_state(path: Path, state: StudyState, fingerprint: str) -> tuple[list[int], list[str]]:
    """Fill `state` from a stopped run's file; (chunks done, skipped images). StudyError if it does not fit."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["__fingerprint__"]) != fingerprint:
                raise StudyError(
                    f"{path}: this study was started with other models, images or settings; "
                    "run it again without --resume, or into another folder"
                )
            for key in state:
                if key not in saved or saved[key].shape != state[key].shape:
                    raise StudyError(f"{path}: the saved state lacks {key!r}; run again without --resume")
                state[key] = saved[key].astype(np.float64)
            return [int(c) for c in saved["__done__"]], [str(s) for s in saved["__skipped__"]]
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, StudyError):
            raise
        raise StudyError(f"{path}: cannot read the saved state ({exc}); run again without --resume") from exc


# ------------------------------------------------------------------------------------- the work


def describe(models: Mapping[str, Backbone], size: int) -> list[ModelInfo]:
    """Each backbone's summary facts, its output levels' map sizes from one probe forward at `size`."""
    infos = []
    for label, model in models.items():
        device = next(model.parameters()).device
        with torch.no_grad():
            feats = model.forward_features(torch.zeros(1, 3, size, size, device=device))
        infos.append(
            ModelInfo(
                label,
                model.variant,
                model.family,
                bool(model.has_classifier),
                [{"name": b.name, "role": b.role, "level": b.level, "channels": b.channels} for b in model.blocks],
                default_cam_block(model.blocks),
                {int(level): tuple(f.shape[-2:]) for level, f in sorted(feats.items())},
            )
        )
    return infos


def _score_function(model: Backbone, class_index: int | None, x: torch.Tensor) -> Callable:
    """What deletion/insertion measures: the class probability, or feature energy relative to the clean image."""
    if class_index is not None:
        return lambda xb: model(xb).float().softmax(1)[:, class_index]
    with torch.no_grad():
        clean = float(feature_energy(model(x)))
    if clean <= 0:  # nothing to be relative to
        return lambda xb: feature_energy(model(xb))
    return lambda xb: feature_energy(model(xb)) / clean


def _model_chunk(
    model: Backbone, i: int, info: ModelInfo, x: torch.Tensor, state: StudyState, config: StudyConfig
) -> list[torch.Tensor]:
    """Add one backbone's numbers for the images `x` (n, 3, S, S) to `state`; its CKA features per block."""
    m, metrics = f"m{i}", config.metrics
    names = [b["name"] for b in info.blocks]
    pooled: list[list[torch.Tensor]] = [[] for _ in names]
    for k in range(x.shape[0]):
        xi = x[k : k + 1]
        p = run_pass(model, xi, PassKey(id(model), "", config.size, "float32", None, config.loss))
        if "traces" in metrics:
            trace = p.trace()
            order = {name: j for j, name in enumerate(names)}
            for which, norms in (("output", p.output_grad_norm), ("weight", p.weight_grad_norm)):
                values = np.full(len(names), np.nan)
                for name, v in norms.items():
                    values[order[name]] = v
                state.add_moments(f"{m}/trace/{which}", values)
                state.add_moments(f"{m}/trace/ratio_{which}", trace.ratio_of(which))
        if "activations" in metrics:
            mean_abs = [float(p.outputs[n].abs().float().mean()) for n in names]
            zeros = [float((p.outputs[n] == 0).float().mean()) for n in names]
            state.add_moments(f"{m}/act/mean_abs", mean_abs)
            state.add_moments(f"{m}/act/zero_fraction", zeros)
            for j, n in enumerate(names):
                key = f"{m}/act/{j}/channel_max"
                state[key] = np.maximum(state[key], p.outputs[n].float().amax(dim=(1, 2)).double().cpu().numpy())
        if "cka" in metrics:
            for j, n in enumerate(names):
                pooled[j].append(p.outputs[n].double().mean(dim=(1, 2)).cpu())
        if "faithfulness" in metrics:
            # Pixels are ranked by the CAM: min-max keeps every rank (a percentile scale ties the top 1% at 1).
            cam = p.cam(info.cam_block, scaling="minmax").cam
            saliency = torch.from_numpy(np.ascontiguousarray(cam)).float().to(xi.device)
            score = _score_function(model, p.class_index, xi)
            deletion, insertion = deletion_insertion(
                score, xi, saliency, config.deletion_steps, config.deletion_steps + 1, config.blur_sigma
            )
            state[f"{m}/faith/deletion"] += deletion
            state[f"{m}/faith/insertion"] += insertion
            state.add_moments(f"{m}/faith/deletion_auc", auc(deletion))
            state.add_moments(f"{m}/faith/insertion_auc", auc(insertion))
        del p
    if "erf" in metrics:
        maps = erf_maps(model, x)
        for level, erf in maps.items():
            state[f"{m}/erf/{level}"] += erf.double().sum(0).cpu().numpy()
        state[f"{m}/erf/n"] += x.shape[0]
    return [torch.stack(f) for f in pooled] if "cka" in metrics else []


def _chunk_images(paths: Sequence[Path], size: int, skipped: list[str]) -> list[np.ndarray]:
    from fishspine.analysis.images import ImageError
    from fishspine.analysis.study.dataset import load_square

    out = []
    for p in paths:
        try:
            out.append(load_square(p, size))
        except ImageError as exc:
            skipped.append(f"{p}\t{exc}")
    return out


def study_job(
    models: Mapping[str, Backbone],
    images: Sequence[Path],
    out: str | Path,
    config: StudyConfig = StudyConfig(),
    rank: Rank | None = None,
    resume: bool = False,
    source: str = "",
) -> Job[dict]:
    """A job: the study of `models` over `images`, written to `out` (rank 0); returns the summary.

    Progress counts this rank's images times models, its text the throughput. An image that cannot
    be read is skipped and listed in the summary. With `resume`, chunks a stopped run finished (its
    state in OUT/state/) are not computed again. `source` names the image set in the summary.
    """
    from fishspine.analysis.images import to_input

    if not models:
        raise StudyError("no backbone to study")
    if not images:
        raise StudyError("no images to study")
    rank = rank or Rank()
    out = Path(out)
    started = time.perf_counter()
    infos = describe(models, config.size)
    state = _allocate(infos, config)
    fingerprint = _fingerprint(models, images, config)
    path = _state_path(out, rank)
    done: list[int] = []
    skipped: list[str] = []
    if resume:
        others = sorted(
            p.name for p in path.parent.glob("rank*-of-*.npz") if not p.name.endswith(f"-of-{rank.world_size}.npz")
        )
        if others and not path.exists():
            raise StudyError(
                f"{out}: the stopped study ran on another number of processes ({others[0]}); "
                "resume it with as many as it had, or run it again without --resume"
            )
        if path.exists():
            done, skipped = _load_state(path, state, fingerprint)
    n_chunks = math.ceil(len(images) / config.batch)
    mine = rank.chunks(n_chunks)
    todo = [c for c in mine if c not in set(done)]

    def chunk(c: int) -> Sequence[Path]:
        return images[c * config.batch : (c + 1) * config.batch]

    total = sum(len(chunk(c)) for c in mine) * len(models)
    progress = sum(len(chunk(c)) for c in done) * len(models)
    computed, t0, rate = 0, time.perf_counter(), 0.0
    yield Progress(progress, total, "starting")
    for c in todo:
        pixels = _chunk_images(chunk(c), config.size, skipped)
        features: list[torch.Tensor] = []
        for i, (label, model) in enumerate(models.items()):
            if pixels:
                device = next(model.parameters()).device
                x = torch.cat([to_input(p, device) for p in pixels])
                features += _model_chunk(model, i, infos[i], x, state, config)
            computed += len(pixels)
            progress += len(pixels)
            rate = computed / len(models) / max(time.perf_counter() - t0, 1e-9)
            yield Progress(progress, total, f"{label} · {rate:.2f} img/s")
        if "cka" in config.metrics and len(pixels) >= CKA_MIN_BATCH:
            state["cka/hsic"] += hsic_matrix(features).cpu().numpy()
            state["cka/batches"] += 1
        state["images"] += len(pixels)
        done.append(c)
        _save_state(path, state, done, skipped, fingerprint)
        # after the save: a job closed at this step has its chunk on disk
        yield Progress(progress, total, f"chunk {c + 1} of {n_chunks} saved · {rate:.2f} img/s")
    reduce_state(state)
    skipped = _gather_skipped(skipped)
    summary = summarise(state, infos, config, rank.world_size, skipped, time.perf_counter() - started)
    summary["config"] |= {"source": source, "device": str(next(next(iter(models.values())).parameters()).device)}
    if rank.rank == 0:
        write_study(out, summary, state, infos, config)
    return summary


def _gather_skipped(skipped: list[str]) -> list[str]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return skipped
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, skipped)
    return sorted({s for part in everyone for s in part})


# ---------------------------------------------------------------------------------- the summary


def summarise(
    state: StudyState,
    infos: Sequence[ModelInfo],
    config: StudyConfig,
    world_size: int = 1,
    skipped: Sequence[str] = (),
    seconds: float = math.nan,
) -> dict:
    """The study's numbers as summary.json holds them (see the README for the schema)."""
    c = config.confidence
    models = {}
    for i, info in enumerate(infos):
        m, names = f"m{i}", [b["name"] for b in info.blocks]
        entry: dict = {
            "variant": info.variant,
            "family": info.family,
            "classifier": info.classifier,
            "blocks": info.blocks,
        }
        if "traces" in config.metrics:
            out_iv, w_iv = state.intervals(f"{m}/trace/output", c), state.intervals(f"{m}/trace/weight", c)
            order = list(reversed(range(len(names))))
            entry["traces"] = {
                "loss": config.loss if info.classifier else "feature_energy",
                "order": [names[j] for j in order],
                "blocks": {
                    names[j]: {"level": info.blocks[j]["level"], "output": out_iv[j], "weight": w_iv[j]} for j in order
                },
                "ratio": {w: state.intervals(f"{m}/trace/ratio_{w}", c)[0] for w in ("output", "weight")},
            }
        if "erf" in config.metrics:
            entry["erf"] = _erf_summary(state, i, info, config.size)
        if "activations" in config.metrics:
            mean_abs, zeros = state.intervals(f"{m}/act/mean_abs", c), state.intervals(f"{m}/act/zero_fraction", c)
            entry["activations"] = {
                n: {
                    "mean_abs": mean_abs[j],
                    "zero_fraction": zeros[j],
                    "dead_channels": int(np.sum(state[f"{m}/act/{j}/channel_max"] <= 0)),
                    "channels": info.blocks[j]["channels"],
                }
                for j, n in enumerate(names)
            }
        if "faithfulness" in config.metrics:
            n = max(state[f"{m}/faith/deletion_auc/n"][0], 1.0)
            entry["faithfulness"] = {
                "block": info.cam_block,
                "score": "probability" if info.classifier else "feature_energy_ratio",
                "deletion_auc": state.intervals(f"{m}/faith/deletion_auc", c)[0],
                "insertion_auc": state.intervals(f"{m}/faith/insertion_auc", c)[0],
                "fractions": [k / config.deletion_steps for k in range(config.deletion_steps + 1)],
                "deletion_curve": (state[f"{m}/faith/deletion"] / n).tolist(),
                "insertion_curve": (state[f"{m}/faith/insertion"] / n).tolist(),
            }
        models[info.label] = entry
    summary = {
        "format": STUDY_FORMAT,
        "version": STUDY_VERSION,
        "config": {
            "images": int(state["images"][0]),
            "size": config.size,
            "batch": config.batch,
            "world_size": world_size,
            "metrics": list(config.metrics),
            "confidence": c,
            "deletion_steps": config.deletion_steps,
            "blur_sigma": config.blur_sigma,
            "seconds": seconds,
        },
        "models": models,
        "skipped": [dict(zip(("file", "error"), s.split("\t", 1))) for s in skipped],
    }
    if "cka" in config.metrics:
        summary["cka"] = {
            "blocks": [[info.label, b["name"]] for info in infos for b in info.blocks],
            "npz_key": "cka",
            "batches": int(state["cka/batches"][0]),
        }
    return summary


def _erf_summary(state: StudyState, i: int, info: ModelInfo, size: int) -> dict:
    out = {}
    for level, hw in info.levels.items():
        erf = _mean_erf(state, i, level)
        centre = unit_centre((size, size), hw)
        # Radii about where the field really is: a strided 3x3 convolution centres its unit up to half a
        # stride before the nominal (i + 1/2) * stride - 1/2, i.e. 15.5 px at stride 32 in a ResNet.
        mass = centre_of_mass(erf) if erf.any() else centre
        out[str(level)] = {
            "stride": 2**level,
            "map_hw": list(hw),
            "centre": list(centre),
            "centre_of_mass": list(mass) if erf.any() else [math.nan, math.nan],
            "radius_50": mass_radius(erf, mass, 0.5),
            "radius_90": mass_radius(erf, mass, 0.9),
            "npz_key": f"m{i}_level{level}",
        }
    return out


def _mean_erf(state: StudyState, i: int, level: int) -> np.ndarray:
    n = state[f"m{i}/erf/n"][0]
    return state[f"m{i}/erf/{level}"] / n if n else state[f"m{i}/erf/{level}"]


def write_study(out: Path, summary: dict, state: StudyState, infos: Sequence[ModelInfo], config: StudyConfig) -> None:
    """summary.json, erf.npz and cka.npz into `out`, each written whole or not at all."""
    from fishspine.analysis.figures.base import write_json

    out.mkdir(parents=True, exist_ok=True)
    if "erf" in config.metrics:
        maps = {
            f"m{i}_level{level}": _mean_erf(state, i, level).astype(np.float32)
            for i, info in enumerate(infos)
            for level in info.levels
        }
        _write_npz(out / "erf.npz", maps)
    if "cka" in config.metrics:
        _write_npz(out / "cka.npz", {"cka": cka_from_hsic(state["cka/hsic"])})
    write_json(out / "summary.json", summary)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
