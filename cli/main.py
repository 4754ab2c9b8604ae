"""The `fishspine` command: every figure the app shows, headless.

Each subcommand is a small function registered in `COMMANDS`; heavy imports happen inside them so
`fishspine --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from fishspine.analysis.options import (  # torch-free: fast --help
    DEFAULT_INPUT_SIZE,
    IMAGE_SIZE_RANGE,
    PRECISIONS,
    STUDY_METRICS,
)
from fishspine.cli.arguments import (
    Increasing,
    bounded_float,
    bounded_int,
    device_name,
    input_file,
    labelled,
    output_folder,
    output_stem,
)

EXAMPLES = """\
examples:
  fishspine models                              list the backbones in the zoo
  fishspine inspect fishnet150_ckpt.tar         what a checkpoint is: family, variant, params, blocks
  fishspine graph spinenet49 -o spinenet49.svg  architecture diagram (+ .csv/.json of the blocks)
  fishspine activations --ckpt A.pth --ckpt B.pth cat.jpg -o out/
  fishspine cam --ckpt A.pth --method gradcampp cat.jpg -o out/
  fishspine gradients --ckpt A.pth --ckpt B.pth img1.jpg img2.jpg -o out/
  fishspine coco --gt val.json --dt ResNet-50=r50.json --dt FishNet-150=f150.json --baseline ResNet-50 -o out/
  fishspine bench models --device cuda          forward throughput against torchvision ResNet-50
"""


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


# ------------------------------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    """List the zoo: variant, family, natural input size, parameters, output levels."""
    import torch

    from fishspine.models import create_model, list_families, list_specs

    if args.family is not None and args.family not in list_families():
        raise UserError(f"unknown family {args.family!r}; known families: {', '.join(list_families())}")
    print(f"{'model':<18} {'family':<9} {'input':>5} {'params':>13}  blocks  outputs (level: channels)")
    for spec in list_specs(args.family):
        with torch.device("meta"):
            m = create_model(spec.name)
        n = sum(p.numel() for p in m.parameters())
        levels = ", ".join(f"P{k}:{c}" for k, c in sorted(m.feature_levels.items()))
        print(f"{spec.name:<18} {spec.family:<9} {spec.input_size:>5} {n:>13,}  {len(m.blocks):>6}  {levels}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the backbones in the zoo", description=cmd_models.__doc__)
    # No argparse choices: the families come from the registry, which `--help` should not import.
    p.add_argument("--family", help="only this family (fishnet, scnet, spinenet, resnet, ...)")
    p.set_defaults(func=cmd_models)


# ----------------------------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    """Recognise a checkpoint from the file alone and print its family, variant, params and blocks."""
    from fishspine.models.checkpoints import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    model = ckpt.model
    print(f"file:      {ckpt.path}")
    print(f"format:    {ckpt.format}")
    print(f"family:    {ckpt.family}")
    print(f"variant:   {ckpt.variant}")
    print(f"params:    {ckpt.num_params:,}")
    extra = {k: v for k, v in ckpt.meta.items() if k not in ("format_version", "family", "variant", "params")}
    if extra:
        print("meta:      " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    levels = ", ".join(f"P{k}: {c} ch (stride {2**k})" for k, c in sorted(model.feature_levels.items()))
    print(f"outputs:   {levels}")
    print(f"blocks:    {len(model.blocks)}")
    if not args.quiet:
        print(f"  {'#':>3}  {'name':<26} {'role':<9} {'level':>5} {'stride':>6} {'channels':>8}  parents")
        for i, b in enumerate(model.blocks):
            print(
                f"  {i:>3}  {b.name:<26} {b.role:<9} {b.level:>5} {2**b.level:>6} {b.channels:>8}  "
                f"{', '.join(b.parents)}"
            )
    return 0


def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect", help="recognise a checkpoint and print its architecture", description=cmd_inspect.__doc__
    )
    p.add_argument("checkpoint", type=input_file(), help="a .tar/.pth/.pt/.safetensors file")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the blocks")
    p.set_defaults(func=cmd_inspect)


# ------------------------------------------------------------------------------------------- bench


def cmd_bench_models(args: argparse.Namespace) -> int:
    """Forward throughput of zoo models next to torchvision ResNet-50, measured in one run."""
    import torch

    from fishspine.bench import models as benchmark

    device = _device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    results = []
    plan = benchmark.bench_plan(args.models)
    total = len(plan) * len(args.modes)
    for i, r in enumerate(
        benchmark.run_benchmark(args.models, tuple(args.modes), device, args.batch, args.warmup, args.repeats), 1
    ):
        results.append(r)
        print(
            f"[{i}/{total}] {r.model} @{r.size} {r.mode}: {r.images_per_s:.1f} img/s, {r.tflops:.2f} TFLOP/s",
            file=sys.stderr,
            flush=True,
        )
    table = benchmark.format_table(results, name)
    print(table)
    if args.output:
        from fishspine.analysis.figures.base import write_json

        Path(args.output).with_suffix(".md").write_text(table + "\n")
        write_json(Path(args.output).with_suffix(".json"), [r.__dict__ | {"tflops": r.tflops} for r in results])
    return 0


def _add_bench(sub) -> None:
    from fishspine.analysis.options import BENCH_MODES as MODES

    p = sub.add_parser("bench", help="benchmarks")
    bsub = p.add_subparsers(dest="bench_what", required=True, metavar="WHAT")
    m = bsub.add_parser(
        "models", help="forward throughput of the zoo vs ResNet-50", description=cmd_bench_models.__doc__
    )
    m.add_argument("models", nargs="*", help="zoo models (default: all)")
    m.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    m.add_argument("--batch", type=bounded_int(1, MAX_BATCH), default=64)
    m.add_argument("--warmup", type=bounded_int(0, 10_000), default=3)
    m.add_argument("--repeats", type=bounded_int(1, 100_000), default=10)
    m.add_argument("-o", "--output", type=output_stem(), help="also write the table (.md) and raw numbers (.json) here")
    _add_device(m)
    m.set_defaults(func=cmd_bench_models)


# ------------------------------------------------------------------------- models from the user


def _models_from(args: argparse.Namespace) -> dict:
    """{label: model} from --ckpt files (LABEL=PATH allowed) and --model zoo names, on --device."""
    from fishspine.models import create_model, list_models
    from fishspine.models.checkpoints import CheckpointError, load_checkpoint

    device = _device(args.device)
    models = {}
    for spec in args.ckpt or []:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        try:
            ckpt = load_checkpoint(path, device)
        except CheckpointError as exc:
            raise UserError(str(exc)) from exc
        models[label or Path(path).stem] = ckpt.model
    for name in args.model or []:
        if name not in list_models():
            raise UserError(f"unknown model {name!r}; `fishspine models` lists them")
        models[f"{name} (untrained)"] = create_model(name, width=args.width).to(device).eval()
    if not models:
        raise UserError("no model given: use --ckpt FILE (repeatable) or --model NAME")
    return models


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


def _progress(total: int, desc: str):
    from tqdm import tqdm

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


# ------------------------------------------------------------------------------------------ graph


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw a model's architecture (fish, scale-permuted or staircase layout) with data."""
    from fishspine.analysis.architecture.graph import architecture_graph
    from fishspine.analysis.figures.architecture import graph_figure
    from fishspine.models import create_model, list_models
    from fishspine.models.checkpoints import CheckpointError, load_checkpoint

    if args.model in list_models():
        model = create_model(args.model)
    else:
        try:
            model = load_checkpoint(args.model).model
        except CheckpointError as exc:
            raise UserError(f"{args.model!r} is neither a zoo model nor a checkpoint I can open: {exc}") from exc
    size = model.spec.input_size if args.size is None else args.size
    graph = architecture_graph(model, size, args.layout)
    values = None
    if args.color_by:
        values = {n.name: float(getattr(n, args.color_by)) for n in graph.nodes}
    from fishspine.analysis.figures.base import ViewExport

    export = ViewExport(
        lambda: graph_figure(graph, values, args.color_by or "", log_values=bool(args.color_by)),
        graph.rows(),
        graph.to_json(),
    )
    out = Path(args.output)
    formats = [out.suffix.lstrip(".")] if out.suffix else ["png", "svg", "pdf"]
    _write_outputs(export, out.with_suffix(""), formats)
    return 0


def _add_graph(sub) -> None:
    p = sub.add_parser("graph", help="architecture diagram of a model or checkpoint", description=cmd_graph.__doc__)
    p.add_argument("model", help="a zoo model name or a checkpoint file")
    p.add_argument(
        "-o", "--output", required=True, type=output_stem(), help="figure file (.png/.svg/.pdf) or a stem for all three"
    )
    p.add_argument(
        "--size",
        type=IMAGE_SIDE,
        help="input size for MAC counts (default: the model's own, as `fishspine models` lists it)",
    )
    p.add_argument("--layout", choices=["staircase", "fish", "scale-permuted"], help="override the layout")
    p.add_argument("--color-by", choices=["params", "macs", "channels"], help="colour nodes by this number")
    p.set_defaults(func=cmd_graph)


# ------------------------------------------------------------------- activations / cam / gradients


def cmd_activations(args: argparse.Namespace) -> int:
    """Per-block activation maps of each model on each image, side by side."""
    from fishspine.analysis.attribution.engine import activations
    from fishspine.analysis.figures.attribution import activations_export

    models = _models_from(args)
    for stem, shown, passes in _analysed_images(args, models, "activations"):
        results = activations(passes, args.reduction, args.normalise)
        _write_outputs(
            activations_export(stem, shown, results, args.rows), args.output / f"{stem}_activations", args.formats
        )
    return 0


def cmd_cam(args: argparse.Namespace) -> int:
    """Grad-CAM / Grad-CAM++ / LayerCAM overlays, or the input attributions Integrated Gradients / Occlusion
    (slower: many passes per model), of each model on each image."""
    from fishspine.analysis.attribution.engine import default_cam_block
    from fishspine.analysis.figures.attribution import cam_export
    from fishspine.analysis.options import CAM_METHODS, INPUT_METHODS

    if args.method in INPUT_METHODS and args.block:
        raise UserError(
            f"--block is for the CAM methods ({', '.join(CAM_METHODS)}); {args.method} attributes the input pixels"
        )
    models = _models_from(args)
    if args.method in INPUT_METHODS:
        return _input_attributions(args, models)
    for label, model in models.items():
        if args.block and not any(b.name == args.block for b in model.blocks):
            raise UserError(f"{label} has no block {args.block!r}; `fishspine inspect` lists the blocks")
    for stem, shown, passes in _analysed_images(args, models, "cam", args.cls):
        cams = {
            label: p.cam(args.block or default_cam_block(p.blocks), args.method, label) for label, p in passes.items()
        }
        _write_outputs(cam_export(stem, shown, cams, args.alpha), args.output / f"{stem}_{args.method}", args.formats)
    return 0


def _input_attributions(args: argparse.Namespace, models: dict) -> int:
    """`cam` for an input attribution: a job per image with its own progress bar, written like the CAMs."""
    from fishspine.analysis.attribution.engine import AnalysisEngine
    from fishspine.analysis.figures.attribution import cam_export
    from fishspine.analysis.images import resize_longer_side

    engine = AnalysisEngine()
    for path, pixels in _load_images(args.images):
        job = engine.iter_attributions(models, pixels, str(path), args.method, args.size, args.precision, args.cls)
        try:
            cams = _run(job, desc=f"{args.method} {path.name}")
        except ValueError as exc:  # a class index past the classifier
            raise UserError(str(exc)) from exc
        _write_outputs(
            cam_export(path.stem, resize_longer_side(pixels, args.size), cams, args.alpha),
            args.output / f"{path.stem}_{args.method}",
            args.formats,
        )
        engine.forget(image=str(path))
    return 0


def cmd_gradients(args: argparse.Namespace) -> int:
    """Gradient-magnitude traces, deepest block to shallowest, models overlaid (each image traced, then averaged)."""
    from fishspine.analysis.attribution.gradients import mean_trace
    from fishspine.analysis.figures.attribution import gradients_export

    models = _models_from(args)
    per_model: dict[str, list] = {label: [] for label in models}
    stems = []
    for stem, _shown, passes in _analysed_images(args, models, "gradients", args.cls, args.loss):
        stems.append(stem)
        for label, p in passes.items():
            per_model[label].append(p.trace(label))
    traces = {label: mean_trace(ts) for label, ts in per_model.items()}
    for m, t in traces.items():
        print(
            f"{m}: shallowest/deepest {args.which} gradient norm = {t.ratio_of(args.which):.4g} "
            f"({len(t.blocks)} blocks, loss {t.loss}, {len(stems)} images)"
        )
    _write_outputs(gradients_export(stems, args.size, traces, args.which), args.output / "gradient_trace", args.formats)
    return 0


def _add_activations(sub) -> None:
    from fishspine.analysis.options import CAM_METHODS, INPUT_METHODS, NORMALISATIONS, REDUCTIONS

    p = sub.add_parser(
        "activations", help="per-block activation maps, models side by side", description=cmd_activations.__doc__
    )
    _add_model_args(p)
    p.add_argument("--reduction", choices=REDUCTIONS, default="mean_abs")
    p.add_argument(
        "--normalise",
        choices=NORMALISATIONS,
        default="block",
        help="block: each map its own range; model: per model; global: one range for all",
    )
    p.add_argument(
        "--rows", type=bounded_int(1, 64), default=8, help="blocks shown per model, spread over depth (1..64)"
    )
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser(
        "cam",
        help="Grad-CAM / Grad-CAM++ / LayerCAM overlays, Integrated Gradients / Occlusion",
        description=cmd_cam.__doc__,
    )
    _add_model_args(p)
    p.add_argument(
        "--method",
        choices=CAM_METHODS + INPUT_METHODS,
        default="gradcam",
        help=f"a CAM at a block ({', '.join(CAM_METHODS)}) or an attribution to the input pixels "
        f"({', '.join(INPUT_METHODS)}: many passes per model, slower)",
    )
    p.add_argument("--block", help="block name for the CAM methods (default: the last block at stride 32)")
    p.add_argument(
        "--class",
        dest="cls",
        type=CLASS_INDEX,
        help="class index (default: top prediction; backbones without a classifier use feature energy)",
    )
    p.add_argument("--alpha", type=bounded_float(0.0, 1.0), default=0.5, help="overlay opacity, 0..1")
    p.set_defaults(func=cmd_cam)

    p = sub.add_parser(
        "gradients", help="gradient-magnitude traces, models overlaid", description=cmd_gradients.__doc__
    )
    _add_model_args(p)
    p.add_argument("--loss", choices=["cross_entropy", "score"], default="cross_entropy")
    p.add_argument("--class", dest="cls", type=CLASS_INDEX, help="class index (default: top prediction)")
    p.add_argument(
        "--which", choices=["output", "weight"], default="output", help="gradient at block outputs or weights"
    )
    p.set_defaults(func=cmd_gradients)


# ------------------------------------------------------------------------------------------- coco


def cmd_coco(args: argparse.Namespace) -> int:
    """COCO per-scale AP of several backbones' result files, with deltas against a baseline."""
    from fishspine.analysis.coco.evaluation import CocoError, format_table, iter_evaluate, per_scale_table
    from fishspine.analysis.coco.tables import latex_table, markdown_table
    from fishspine.analysis.figures.base import save_figure, write_csv, write_json
    from fishspine.analysis.figures.coco import per_class_figure, pr_curves_figure, size_bars_figure, table_figure
    from fishspine.models.atomic_files import atomic_write_bytes

    results = {}
    for spec in args.dt:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        results[name] = path
    if args.baseline and args.baseline not in results:
        raise UserError(f"--baseline {args.baseline!r} is not one of the --dt names ({', '.join(results)})")
    if args.evidence and not (args.baseline and args.images):
        raise UserError("--evidence compares each backbone with --baseline NAME and crops from --images DIR: give both")
    ranges = None
    if args.area_ranges:
        small, large = args.area_ranges
        ranges = {
            "all": (0.0, 1e10),
            "small": (0.0, small**2),
            "medium": (small**2, large**2),
            "large": (large**2, 1e10),
        }
    boot = args.bootstrap if args.baseline else 0  # intervals are on deltas: none without a baseline
    bar = _progress(len(results) * len(args.iou_types), "coco")
    out = Path(args.output)
    for iou_type in args.iou_types:
        try:
            evals = _run(
                iter_evaluate(args.gt, results, iou_type, ranges, tuple(args.max_dets), boot, args.seed),
                bar,
                per_step=True,
            )
        except CocoError as exc:
            raise UserError(str(exc)) from exc
        text = format_table(evals, args.baseline, bootstrap=boot, seed=args.seed)
        print(text)
        print()
        stem = out / f"coco_{iou_type}"
        rows = per_scale_table(evals, args.baseline, boot, args.seed)
        written = [write_csv(stem.with_suffix(".csv"), rows)]
        written.append(
            write_json(
                stem.with_suffix(".json"),
                {
                    "iou_type": iou_type,
                    "baseline": args.baseline,
                    "max_dets": list(args.max_dets),
                    "area_ranges": next(iter(evals.values())).area_ranges,
                    "area_source": next(iter(evals.values())).area_source,
                    "bootstrap": {"resamples": boot, "seed": args.seed, "confidence": 0.95, "over": "images"}
                    if boot
                    else None,
                    "table": rows,
                    "per_class": {n: e.per_class_table() for n, e in evals.items()},
                },
            )
        )
        note = "\n".join(text.splitlines()[:2])
        for suffix, body in (
            (".tex", latex_table(rows, args.baseline, note=note)),
            (".md", markdown_table(rows, args.baseline, note=note)),
        ):
            target = out / f"coco_{iou_type}_table{suffix}"
            atomic_write_bytes(target, body.encode())
            written.append(target)
        written += save_figure(
            table_figure(evals, args.baseline, boot, args.seed), out / f"coco_{iou_type}_table", args.formats
        )
        written += save_figure(
            size_bars_figure(evals, args.baseline, boot, args.seed), out / f"coco_{iou_type}_sizes", args.formats
        )
        written += save_figure(pr_curves_figure(evals, 0.5), out / f"coco_{iou_type}_pr", args.formats)
        for name, ev in evals.items():
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            written += save_figure(per_class_figure(ev), out / f"coco_{iou_type}_classes_{safe}", args.formats)
        for w in written:
            print(w, file=sys.stderr)
    bar.close()
    if args.errors:
        _coco_errors(args, results, ranges, out)
    if args.evidence:
        _coco_evidence(args, results, ranges)
    return 0


def _coco_evidence(args: argparse.Namespace, results: dict, ranges: dict | None) -> None:
    """`coco --evidence DIR`: per backbone and size range, the objects behind its difference to the baseline."""
    from functools import lru_cache

    from fishspine.analysis.coco.evaluation import DEFAULT_AREA_RANGES, CocoError, load_ground_truth, load_results
    from fishspine.analysis.coco.evidence import evidence
    from fishspine.analysis.figures.base import model_color
    from fishspine.analysis.figures.coco_evidence import evidence_export
    from fishspine.analysis.images import ImageError, load_image

    try:
        gt = load_ground_truth(args.gt)
        dets = {name: load_results(path, gt, "bbox", name) for name, path in results.items()}
    except CocoError as exc:
        raise UserError(str(exc)) from exc
    files = {e["id"]: e.get("file_name") for e in gt["images"]}
    categories = {c["id"]: c["name"] for c in gt["categories"]}

    @lru_cache(maxsize=64)
    def image(image_id: int):
        name = files.get(image_id)
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            return None
        try:
            return load_image(Path(args.images) / name)
        except ImageError:
            return None

    names = list(results)
    for name in names:
        if name == args.baseline:
            continue
        for area in ranges or DEFAULT_AREA_RANGES:
            ev = evidence(gt, (name, dets[name]), (args.baseline, dets[args.baseline]), area, ranges)
            colors = (model_color(names.index(name)), model_color(names.index(args.baseline)))
            counts = ", ".join(f"{k} {v}" for k, v in ev.counts().items())
            print(f"{name} vs {args.baseline}, {area}: {counts}")
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            export = evidence_export(ev, image, categories, colors)
            for w in export.write(Path(args.evidence) / f"{safe}_{area}", args.formats):
                print(w, file=sys.stderr)


def _coco_errors(args: argparse.Namespace, results: dict, ranges: dict | None, out: Path) -> None:
    """`coco --errors`: TIDE's error breakdown of each result file's boxes, per size range."""
    from fishspine.analysis.coco.errors import error_breakdown
    from fishspine.analysis.coco.evaluation import CocoError, load_ground_truth, load_results
    from fishspine.analysis.figures.coco_errors import errors_export, format_errors

    try:
        gt = load_ground_truth(args.gt)
        breakdowns = {
            name: error_breakdown(gt, load_results(path, gt, "bbox", name), name, ranges, args.max_dets[-1])
            for name, path in results.items()
        }
    except CocoError as exc:
        raise UserError(str(exc)) from exc
    print(format_errors(breakdowns, args.baseline))
    for w in errors_export(breakdowns, args.baseline).write(out / "coco_bbox_errors", args.formats):
        print(w, file=sys.stderr)


def _add_coco(sub) -> None:
    p = sub.add_parser("coco", help="COCO per-scale AP with deltas against a baseline", description=cmd_coco.__doc__)
    p.add_argument("--gt", required=True, type=input_file(), help="ground-truth annotations (COCO json)")
    p.add_argument(
        "--dt",
        required=True,
        action="append",
        metavar="NAME=RESULTS.json",
        type=labelled(),
        help="a backbone's detections (COCO result json); repeat per backbone",
    )
    p.add_argument("--baseline", help="NAME of the --dt to compute deltas against")
    p.add_argument("--iou-types", nargs="+", default=["bbox"], choices=["bbox", "segm"])
    p.add_argument(
        "--max-dets",
        nargs=3,
        type=bounded_int(1, 100_000),
        default=[1, 10, 100],
        action=Increasing,
        metavar=("M1", "M2", "M3"),
        help="detections per image kept, three increasing counts (default 1 10 100)",
    )
    p.add_argument(
        "--area-ranges",
        nargs=2,
        type=bounded_float(0.0, 1e5, lo_open=True),
        action=Increasing,
        metavar=("SMALL", "LARGE"),
        help="side lengths splitting small/medium/large, increasing (default 32 96)",
    )
    p.add_argument(
        "--errors",
        action="store_true",
        help="also TIDE's error breakdown of the boxes (classification, localisation, both, duplicate, background, "
        "missed) per size range: coco_bbox_errors.*",
    )
    p.add_argument(
        "--evidence",
        type=output_folder,
        metavar="DIR",
        help="also the objects behind each backbone's difference to --baseline, per size range: galleries of "
        "crops (needs --images) and CSV/JSON, into DIR",
    )
    p.add_argument("--images", type=_input_folder, metavar="DIR", help="the images of --gt (for --evidence crops)")
    p.add_argument(
        "--bootstrap",
        type=bounded_int(0, 100_000),
        default=1000,
        metavar="N",
        help="resamples of the images for the 95%% paired bootstrap interval of each delta (default 1000; 0: none)",
    )
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument("-o", "--output", required=True, type=output_folder, help="output folder")
    p.add_argument("--formats", nargs="+", default=["png", "svg", "pdf"], choices=["png", "svg", "pdf"])
    p.set_defaults(func=cmd_coco)


# ------------------------------------------------------------------------------------------ study


def _input_folder(text: str) -> Path:
    """An existing folder to read from."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text[:120]}: no such folder; allowed: a folder of images")
    return path


def _add_study(sub) -> None:
    from fishspine.cli.study import cmd_study

    p = sub.add_parser(
        "study",
        help="traces, receptive fields, activation statistics, CAM faithfulness and CKA over a dataset",
        description=cmd_study.__doc__,
        epilog="data-parallel: torchrun --nproc_per_node=N -m fishspine.cli.main study ... (see the README)",
    )
    _add_model_args(p, images=False)
    p.add_argument("folder", nargs="?", type=_input_folder, metavar="IMAGES", help="a folder of images (recursive)")
    p.add_argument("--coco", type=input_file(), metavar="ANN.json", help="a COCO split's annotations instead")
    p.add_argument("--images", type=_input_folder, metavar="DIR", help="with --coco: the split's image folder")
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


# ------------------------------------------------------------------------------------------- data


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Write the generated COCO-format dataset (shapes with masks, all three size ranges)."""
    from fishspine.training.synth import SynthConfig, iter_synth

    config = SynthConfig(train=args.train, val=args.val, image_size=args.size, seed=args.seed)
    summary = _run(iter_synth(args.output, config), desc="images")
    for split, info in summary["splits"].items():
        print(
            f"{split}: {info['images']} images, {info['objects']} objects "
            f"(small {info['small']:.0%}, medium {info['medium']:.0%}, large {info['large']:.0%}) -> "
            f"{info['annotations']}"
        )
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="datasets")
    dsub = p.add_subparsers(dest="data_what", required=True, metavar="WHAT")
    s = dsub.add_parser("synth", help="generate the COCO-format demo dataset", description=cmd_data_synth.__doc__)
    s.add_argument("output", type=output_folder, help="output folder (train/, val/, annotations/)")
    s.add_argument("--train", type=bounded_int(0, 1_000_000), default=400, help="training images (default 400)")
    s.add_argument("--val", type=bounded_int(0, 1_000_000), default=100, help="validation images (default 100)")
    s.add_argument("--size", type=IMAGE_SIDE, default=320, help="image side in pixels (default 320)")
    s.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0)
    s.set_defaults(func=cmd_data_synth)


# ------------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    """Train a backbone with an FCOS head on a COCO-format dataset; write checkpoints and val detections."""
    from fishspine.models import list_models
    from fishspine.training.train import TrainConfig, iter_train

    if args.backbone not in list_models():
        raise UserError(f"unknown backbone {args.backbone!r}; `fishspine models` lists them")
    cfg = TrainConfig(
        args.backbone,
        str(args.data),
        str(args.out or Path("runs") / args.backbone),
        args.width,
        args.epochs,
        args.batch,
        args.lr,
        image_size=args.image_size,
        device=args.device,
        resume=args.resume,
        max_steps=args.max_steps,
        train_split=args.train_split,
        val_split=args.val_split,
    )
    _device(args.device)
    try:
        summary = _run(iter_train(cfg), desc="train")
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(
        f"trained {summary['backbone']} for {summary['steps']} steps in {summary['seconds']:.0f} s on "
        f"{summary['device']}; last loss {summary['losses'][-1]:.3f}"
    )
    print(f"backbone checkpoint: {summary['checkpoint']}")
    print(f"validation detections: {summary['detections']}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a backbone with a detection head", description=cmd_train.__doc__)
    p.add_argument("--backbone", required=True, help="zoo model name")
    p.add_argument(
        "--data", required=True, type=Path, help="dataset folder: annotations/instances_{train,val}.json, train/, val/"
    )
    p.add_argument("--out", type=output_folder, help="run folder (default runs/BACKBONE)")
    p.add_argument("--width", type=WIDTH, default=0.25, help="channel multiplier in (0, 8] (default 0.25: demo-sized)")
    p.add_argument("--epochs", type=bounded_int(1, 100_000), default=12)
    p.add_argument("--batch", type=bounded_int(1, MAX_BATCH), default=8)
    p.add_argument("--lr", type=bounded_float(0.0, 10.0, lo_open=True), default=1e-3, help="learning rate in (0, 10]")
    p.add_argument("--image-size", type=IMAGE_SIDE, default=320)
    p.add_argument("--max-steps", type=bounded_int(0), default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--train-split",
        default="train",
        help="split name: annotations/instances_SPLIT.json, SPLIT/ (COCO itself: train2017)",
    )
    p.add_argument("--val-split", default="val", help="likewise for validation (COCO: val2017)")
    _add_device(p)
    p.set_defaults(func=cmd_train)


# ------------------------------------------------------------------------------------------- main


def _device(name: str):
    from fishspine.analysis.device import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc


SUBCOMMANDS: list[Callable] = [
    _add_models,
    _add_inspect,
    _add_graph,
    _add_activations,
    _add_coco,
    _add_study,
    _add_data,
    _add_train,
    _add_bench,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="fishspine",
        description="See inside multi-scale CNN backbones (FishNet, SCNet, SpineNet) against ResNets: "
        "architecture diagrams, activations, Grad-CAM, gradient traces and COCO per-scale AP, "
        "as publication-quality figures (PNG, SVG, PDF) and data (CSV, JSON).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fishspine`."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"fishspine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # Run the package's copy of this module, not __main__'s: the commands in other modules (cli/study.py)
    # import this one, and their UserError must be the one main() catches (torchrun -m fishspine.cli.main).
    from fishspine.cli.main import main as package_main

    sys.exit(package_main())
