"""What the commands share: the user-error exception, argument types, models and images from the user, progress bars."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fishspine.analysis.options import DEFAULT_INPUT_SIZE, IMAGE_SIZE_RANGE, PRECISIONS  # torch-free: fast --help
from fishspine.cli.arguments import bounded_float, bounded_int, device_name, input_file, labelled, output_folder

IMAGE_SIDE_RANGE = IMAGE_SIZE_RANGE
IMAGE_SIDE = bounded_int(*IMAGE_SIDE_RANGE)
WIDTH = bounded_float(0.0, 8.0, lo_open=True)  # channel multipliers beyond 8 only exhaust memory
CLASS_INDEX = bounded_int(0, 100_000)
MAX_BATCH = 65_536
OUTPUT_SUFFIX_BYTES = 24  # the longest suffix a command adds to an image's stem: "_activations.json"


class UserError(Exception):
    """A problem with the user's input: printed as one clear message, exit status 2."""


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        type=device_name,
        help="where to compute: auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...",
    )


def _device(name: str):
    from fishspine.analysis.device import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc


# ------------------------------------------------------------------------- models from the user


def _checkpoints_from(args: argparse.Namespace, device) -> dict:
    """{label: Checkpoint} of the --ckpt files (LABEL=PATH allowed), on `device`."""
    from fishspine.models.checkpoints import CheckpointError, load_checkpoint

    out = {}
    for spec in args.ckpt or []:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        try:
            out[label or Path(path).stem] = load_checkpoint(path, device)
        except CheckpointError as exc:
            raise UserError(str(exc)) from exc
    return out


def _models_from(args: argparse.Namespace) -> dict:
    """{label: model} from --ckpt files (LABEL=PATH allowed) and --model zoo names, on --device."""
    from fishspine.models import create_model, list_models

    device = _device(args.device)
    models = {label: ckpt.model for label, ckpt in _checkpoints_from(args, device).items()}
    for name in args.model or []:
        if name not in list_models():
            raise UserError(f"unknown model {name!r}; `fishspine models` lists them")
        models[f"{name} (untrained)"] = create_model(name, width=args.width).to(device).eval()
    if not models:
        raise UserError("no model given: use --ckpt FILE (repeatable) or --model NAME")
    return models


def _detectors_from(args: argparse.Namespace) -> dict:
    """{label: Checkpoint} of whole detectors from --ckpt (a backbone alone, or --model, is refused)."""

    if args.model:
        raise UserError("--detection needs whole detectors (--ckpt files saved by `fishspine train`), not --model")
    out = _checkpoints_from(args, _device(args.device))
    for ckpt in out.values():
        if ckpt.detector is None:
            raise UserError(
                f"{ckpt.path}: a backbone alone ({ckpt.variant}, {ckpt.format}); --detection needs a whole detector "
                "(backbone, pyramid and head) as `fishspine train` saves it (detector_epochN.safetensors)"
            )
    if not out:
        raise UserError("no detector given: use --ckpt FILE (repeatable), a detector saved by `fishspine train`")
    return out


def _load_images(paths: list[Path]) -> list[tuple[Path, object]]:
    """(path, RGB pixels) of every image, all read before any model runs (a bad file stops at once)."""
    from fishspine.analysis.images import ImageError, load_image

    out = []
    for p in paths:
        try:
            out.append((Path(p), load_image(p)))
        except ImageError as exc:
            raise UserError(str(exc)) from exc
    return out


def _analysed_images(
    args: argparse.Namespace, models: dict, what: str, class_index: int | None = None, loss: str = "cross_entropy"
):
    """Yield (stem, image as analysed, {label: ModelPass}) per image: one engine pass per model and image."""
    from fishspine.analysis.attribution.engine import AnalysisEngine
    from fishspine.analysis.images import resize_longer_side

    images = _load_images(args.images)
    engine = AnalysisEngine()
    bar = _progress(len(images) * len(models), what)
    try:
        for path, pixels in images:
            job = engine.iter_passes(models, pixels, str(path), args.size, args.precision, class_index, loss)
            try:
                passes = _run(job, bar, per_step=True)
            except ValueError as exc:  # a class index past the classifier
                raise UserError(str(exc)) from exc
            yield path.stem, resize_longer_side(pixels, args.size), passes
            engine.forget(image=str(path))
    finally:
        bar.close()


def _add_model_args(p: argparse.ArgumentParser, images: bool = True) -> None:
    p.add_argument(
        "--ckpt",
        action="append",
        metavar="[LABEL=]FILE",
        type=labelled(split_last=True),
        help="a checkpoint (any supported format); repeat for side-by-side columns",
    )
    p.add_argument("--model", action="append", metavar="NAME", help="an untrained zoo model (repeatable)")
    p.add_argument("--width", type=WIDTH, default=1.0, help="channel multiplier for --model, in (0, 8] (default 1)")
    if images:
        # outputs are named IMAGE-STEM_what.ext: leave room for the suffix in the file-name limit
        p.add_argument("images", nargs="+", type=input_file(OUTPUT_SUFFIX_BYTES), metavar="IMG", help="image files")
        p.add_argument(
            "--size",
            type=IMAGE_SIDE,
            default=DEFAULT_INPUT_SIZE,
            help=f"resize so the longer side is this, {IMAGE_SIDE_RANGE[0]}..{IMAGE_SIDE_RANGE[1]} "
            f"(default {DEFAULT_INPUT_SIZE}, as in the app)",
        )
        p.add_argument(
            "--precision", choices=PRECISIONS, default="float32", help="float32, or bf16 autocast (fast on recent GPUs)"
        )
    p.add_argument("-o", "--output", type=output_folder, required=True, help="output folder")
    p.add_argument("--formats", nargs="+", default=["png", "svg", "pdf"], choices=["png", "svg", "pdf"])
    _add_device(p)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _progress(total: int, desc: str):
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: `fishspine coco` forks only while it has no other thread
    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None)


def _run(job, bar=None, per_step: bool = False, desc: str = ""):
    """Drive a job (analysis/jobs.py) to its result, showing its progress on `bar` (made here if None).

    `per_step`: the bar counts the job's steps across several jobs (one update per step), instead of
    following the job's own done/total.
    """
    from fishspine.analysis.jobs import run_job

    own = bar is None
    last = [0]

    def show(p) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress(p.total, desc)
        if per_step:
            if p.done > last[0]:
                bar.update(p.done - last[0])
            last[0] = p.done
        else:
            if bar.total != p.total:
                bar.total = p.total
            bar.n = p.done
            bar.refresh()
        if p.text:
            bar.set_postfix_str(p.text, refresh=False)

    try:
        return run_job(job, show)
    finally:
        if own and bar is not None:
            bar.close()


def _write_outputs(export, stem: Path, formats: list[str]) -> None:
    for w in export.write(stem, formats):
        print(w)
