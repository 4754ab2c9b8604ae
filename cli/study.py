"""`fishspine study`: every backbone over an image folder or a COCO split, one process or many under torchrun."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fishspine.analysis.options import DEFAULT_INPUT_SIZE, STUDY_METRICS
from fishspine.cli.arguments import bounded_int, input_file, input_folder
from fishspine.cli.common import IMAGE_SIDE, UserError, _add_model_args, _models_from, _run


def _distributed(device: str):
    """(this process's Rank, the device it computes on): torch.distributed is started under torchrun only.

    torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; each rank then takes the GPU of its LOCAL_RANK with
    NCCL, or the CPU with gloo.
    """
    from fishspine.analysis.study.runner import Rank

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank(), device
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    dist.init_process_group("nccl" if cuda else "gloo")
    return Rank(dist.get_rank(), dist.get_world_size()), device


def _image_list(args: argparse.Namespace) -> list[Path]:
    from fishspine.analysis.study.dataset import StudyInputError, coco_split, image_folder

    if bool(args.coco) == bool(args.folder):
        raise UserError("give an image folder, or --coco ANNOTATIONS.json with --images FOLDER (not both)")
    if args.coco and not args.images:
        raise UserError("--coco needs --images FOLDER: where the split's image files are")
    try:
        if args.coco:
            return coco_split(args.coco, args.images, args.limit)
        return image_folder(args.folder, args.limit)
    except StudyInputError as exc:
        raise UserError(str(exc)) from exc


def cmd_study(args: argparse.Namespace) -> int:
    """Gradient traces, effective receptive fields, activation statistics, CAM faithfulness and CKA of
    every backbone over a dataset, with 95% intervals; data-parallel under torchrun."""
    from fishspine.analysis.jobs import JobCancelled
    from fishspine.analysis.study.runner import StudyConfig, StudyError, study_job

    images = _image_list(args)
    rank, args.device = _distributed(args.device)
    try:
        try:
            config = StudyConfig(
                size=args.size,
                batch=args.batch,
                metrics=tuple(args.metrics),
                deletion_steps=args.deletion_steps,
            )
        except StudyError as exc:
            raise UserError(str(exc)) from exc
        models = _models_from(args)
        from tqdm import tqdm

        # Progress counts images times backbones; the bar shows images (and images/s).
        bar = tqdm(
            total=0,
            desc="study",
            unit="img",
            unit_scale=1 / len(models),
            file=sys.stderr,
            disable=rank.rank != 0 or None,
        )
        try:
            source = str(args.coco or args.folder)
            summary = _run(study_job(models, images, args.output, config, rank, args.resume, source), bar)
        except StudyError as exc:
            raise UserError(str(exc)) from exc
        except JobCancelled:  # pragma: no cover - the CLI never cancels
            return 130
        finally:
            bar.close()
        if rank.rank == 0:
            _report(summary)
            _write_figures(Path(args.output), args.formats)
        return 0
    finally:
        _stop_distributed()


def _stop_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _report(summary: dict) -> None:
    """One line per backbone with the study's headline numbers."""
    cfg = summary["config"]
    print(f"{cfg['images']} images at {cfg['size']} px, {cfg['world_size']} process(es), {cfg['seconds']:.1f} s")
    for label, m in summary["models"].items():
        parts = [label]
        if "traces" in m:
            r = m["traces"]["ratio"]["output"]
            parts.append(f"gradient shallowest/deepest {_iv(r)}")
        if "erf" in m and m["erf"]:
            level, erf = max(m["erf"].items(), key=lambda kv: int(kv[0]))
            parts.append(f"ERF r90 at stride {erf['stride']}: {erf['radius_90']:.0f} px")
        if "faithfulness" in m:
            f = m["faithfulness"]
            parts.append(f"deletion AUC {_iv(f['deletion_auc'])}, insertion AUC {_iv(f['insertion_auc'])}")
        print("; ".join(parts))
    for s in summary.get("skipped", []):
        print(f"skipped {s['file']}: {s.get('error', '')}", file=sys.stderr)


def _iv(i: dict) -> str:
    return f"{i['mean']:.4g} [{i['lo']:.4g}, {i['hi']:.4g}]"


def _write_figures(out: Path, formats: list[str]) -> None:
    from fishspine.analysis.figures.study import load_study, study_exports

    study = load_study(out)
    for name, export in study_exports(study).items():
        for path in export.write(out / name, formats):
            print(path, file=sys.stderr)


def _add_study(sub) -> None:
    p = sub.add_parser(
        "study",
        help="traces, receptive fields, activation statistics, CAM faithfulness and CKA over a dataset",
        description=cmd_study.__doc__,
        epilog="data-parallel: torchrun --nproc_per_node=N -m fishspine.cli.main study ... (see the README)",
    )
    _add_model_args(p, images=False)
    p.add_argument("folder", nargs="?", type=input_folder, metavar="IMAGES", help="a folder of images (recursive)")
    p.add_argument("--coco", type=input_file(), metavar="ANN.json", help="a COCO split's annotations instead")
    p.add_argument("--images", type=input_folder, metavar="DIR", help="with --coco: the split's image folder")
    p.add_argument("--limit", type=bounded_int(1), help="only the first N images (in sorted order / by image id)")
    p.add_argument(
        "--size",
        type=IMAGE_SIDE,
        default=DEFAULT_INPUT_SIZE,
        help=f"square input side: shorter side scaled to it, centre crop (default {DEFAULT_INPUT_SIZE})",
    )
    p.add_argument("--batch", type=bounded_int(1, 4096), default=8, help="images per chunk (and CKA minibatch, >= 4)")
    p.add_argument("--metrics", nargs="+", default=list(STUDY_METRICS), choices=STUDY_METRICS)
    p.add_argument(
        "--deletion-steps", type=bounded_int(2, 1000), default=16, help="points of the deletion/insertion curves - 1"
    )
    p.add_argument("--resume", action="store_true", help="continue a stopped study in the same -o folder")
    p.set_defaults(func=cmd_study)
