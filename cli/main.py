"""The `fishspine` command: every figure the app shows, headless.

Each subcommand is a small function registered in `SUBCOMMANDS`; heavy imports happen inside them so
`fishspine --help` answers at once. `coco` and `study` live in cli/coco.py and cli/study.py; what the
commands share (user errors, models and images from the user, progress bars) in cli/common.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from fishspine.cli.arguments import (
    bounded_float,
    bounded_int,
    detection_box,
    input_file,
    multiple_of,
    output_folder,
    output_stem,
)
from fishspine.cli.coco import _add_coco
from fishspine.cli.common import (
    CLASS_INDEX,
    IMAGE_SIDE,
    MAX_BATCH,
    WIDTH,
    UserError,
    _add_device,
    _add_model_args,
    _analysed_images,
    _detectors_from,
    _device,
    _load_images,
    _models_from,
    _run,
    _write_outputs,
)
from fishspine.cli.study import _add_study

EXAMPLES = """\
examples:
  fishspine models                              list the backbones in the zoo
  fishspine inspect fishnet150_ckpt.tar         what a checkpoint is: family, variant, params, blocks
  fishspine graph spinenet49 -o spinenet49.svg  architecture diagram (+ .csv/.json of the blocks)
  fishspine graph resnet50 scnet50 --color-by macs -o cmp   side by side, one colour scale
  fishspine graph scnet50 --expand layer1.1 -o inside       what is inside a block (traced operations)
  fishspine activations --ckpt A.pth --ckpt B.pth cat.jpg -o out/
  fishspine cam --ckpt A.pth --method gradcampp cat.jpg -o out/
  fishspine gradients --ckpt A.pth --ckpt B.pth img1.jpg img2.jpg -o out/
  fishspine coco --gt val.json --dt ResNet-50=r50.json --dt FishNet-150=f150.json --baseline ResNet-50 -o out/
  fishspine coco ... --baseline ResNet-50 --errors --evidence evidence/ --images val2017/ -o out/
  fishspine study --ckpt A.pth --ckpt B.pth images/ -o study/   traces, ERF, CKA, faithfulness over a dataset
  fishspine bench models --device cuda          forward throughput against torchvision ResNet-50
"""


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
    if ckpt.detector_spec is not None:
        spec = ckpt.detector_spec
        print(
            f"detector:  FCOS over this backbone, {spec.fpn_channels}-channel pyramid FPN P3..P7, "
            f"{spec.image_size} px input, {spec.num_classes} classes ({', '.join(spec.category_names)}), "
            f"{ckpt.meta.get('detector_params', 0):,} params in all: `fishspine cam --detection` takes it"
        )
    skip = ("format_version", "family", "variant", "params", "detector", "detector_params")
    extra = {k: v for k, v in ckpt.meta.items() if k not in skip}
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


# ------------------------------------------------------------------------------------------ graph


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw a model's architecture (fish, scale-permuted or staircase layout) with data; several models
    side by side on one colour scale; or, with --expand, what is inside one block."""
    from fishspine.analysis.architecture.graph import architecture_graph
    from fishspine.analysis.figures.architecture import graph_figure, graphs_figure
    from fishspine.analysis.figures.base import ViewExport

    models = [_graph_model(name) for name in args.model]
    sizes = [m.spec.input_size if args.size is None else args.size for m in models]
    if args.expand:
        if len(models) > 1:
            raise UserError("--expand opens a block of one model; give one model")
        return _write_graph_export(_interior_export(models[0], args.expand, sizes[0]), args)
    graphs = [architecture_graph(m, size, args.layout) for m, size in zip(models, sizes)]
    values = None
    if args.color_by:
        values = [{n.name: float(getattr(n, args.color_by)) for n in g.nodes} for g in graphs]
    if len(graphs) == 1:
        graph, one = graphs[0], None if values is None else values[0]
        export = ViewExport(
            lambda: graph_figure(graph, one, args.color_by or "", log_values=bool(args.color_by)),
            graph.rows(),
            graph.to_json(),
        )
    else:
        names = [_model_label(name, g) for name, g in zip(args.model, graphs)]
        export = ViewExport(
            lambda: graphs_figure(graphs, values, args.color_by or "", log_values=bool(args.color_by)),
            [{"model": name} | row for name, g in zip(names, graphs) for row in g.rows()],
            {"models": [{"name": name} | g.to_json() for name, g in zip(names, graphs)]},
        )
    return _write_graph_export(export, args)


def _graph_model(name: str):
    """A zoo model by name, or the model of a checkpoint file."""
    from fishspine.models import create_model, list_models
    from fishspine.models.checkpoints import CheckpointError, load_checkpoint

    if name in list_models():
        return create_model(name)
    try:
        return load_checkpoint(name).model
    except CheckpointError as exc:
        raise UserError(f"{name!r} is neither a zoo model nor a checkpoint I can open: {exc}") from exc


def _model_label(name: str, graph) -> str:
    """How a model is named in a side-by-side export: its variant, or the file it came from."""
    return graph.model if graph.model == name else f"{Path(name).stem} ({graph.model})"


def _interior_export(model, block: str, size: int):
    """The figure and data of what is inside one block (`fishspine graph --expand`, the app's expansion)."""
    from fishspine.analysis.architecture.interior import block_interior
    from fishspine.analysis.figures.base import ViewExport
    from fishspine.analysis.figures.interior import interior_figure

    try:
        interior = block_interior(model, block, size)
    except KeyError as exc:
        names = ", ".join(b.name for b in model.blocks[:8])
        raise UserError(f"{exc.args[0]}; blocks are named like {names}, …") from exc
    return ViewExport(lambda: interior_figure(interior), interior.rows(), interior.to_json())


def _write_graph_export(export, args: argparse.Namespace) -> int:
    out = Path(args.output)
    suffix = out.suffix.lstrip(".").lower()
    if suffix and suffix not in ("png", "svg", "pdf"):
        raise UserError(f"{out.name}: a figure is .png, .svg or .pdf; or give a stem (no suffix) for all three")
    formats = args.formats or ([suffix] if suffix else ["png", "svg", "pdf"])
    if suffix and not args.formats:
        print(f"{out.name}: the suffix chose {suffix.upper()} (and .csv/.json beside it); --formats picks others")
    _write_outputs(export, out.with_suffix("") if suffix else out, formats)
    return 0


def _add_graph(sub) -> None:
    p = sub.add_parser("graph", help="architecture diagram of a model or checkpoint", description=cmd_graph.__doc__)
    p.add_argument(
        "model", nargs="+", help="zoo model names or checkpoint files (several: side by side on one colour scale)"
    )
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
    p.add_argument(
        "--expand",
        metavar="BLOCK",
        help="draw what is inside this block instead (its traced operations, e.g. SCNet's pooled calibration branch)",
    )
    p.add_argument(
        "--formats",
        nargs="+",
        choices=["png", "svg", "pdf"],
        help="figure formats (default: -o's suffix, or all three)",
    )
    p.set_defaults(func=cmd_graph)


# ------------------------------------------------------------------- activations / cam / gradients


def cmd_activations(args: argparse.Namespace) -> int:
    """Per-block activation maps of each model on each image, side by side."""
    from fishspine.analysis.attribution.engine import activations
    from fishspine.analysis.figures.attribution import activations_export

    models = _models_from(args)
    for stem, shown, passes in _analysed_images(args, models, "activations"):
        results = activations(passes, args.reduction, args.normalise, scaling=args.scaling)
        _write_outputs(
            activations_export(stem, shown, results, args.rows, _families(models)),
            args.output / f"{stem}_activations",
            args.formats,
        )
    return 0


def _families(models: dict) -> dict[str, str]:
    """Each labelled model's family: what its colour follows in every figure."""
    return {label: model.family for label, model in models.items()}


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
    if args.detection is not None or args.category is not None:
        if args.method in INPUT_METHODS:
            raise UserError(f"--detection is for the CAM methods ({', '.join(CAM_METHODS)}), not {args.method}")
        if args.cls is not None:
            raise UserError("--class is for classifiers; a detection CAM takes --category")
        return _detection_cams(args)
    models = _models_from(args)
    if args.method in INPUT_METHODS:
        return _input_attributions(args, models)
    for label, model in models.items():
        if args.block and not any(b.name == args.block for b in model.blocks):
            raise UserError(f"{label} has no block {args.block!r}; `fishspine inspect` lists the blocks")
    for stem, shown, passes in _analysed_images(args, models, "cam", args.cls):
        cams = {
            label: p.cam(args.block or default_cam_block(p.blocks), args.method, label, args.scaling)
            for label, p in passes.items()
        }
        _write_outputs(
            cam_export(stem, shown, cams, args.alpha, args.cmap, families=_families(models)),
            args.output / f"{stem}_{args.method}",
            args.formats,
        )
    return 0


def _category_label(spec, category: str | None, who: str) -> int | None:
    """The detector's label for a category given by name or dataset id (None: any class)."""
    if category is None:
        return None
    if category in spec.category_names:
        return spec.category_names.index(category)
    if category.isdigit() and int(category) in spec.categories:
        return spec.categories.index(int(category))
    raise UserError(
        f"{who} detects no category {category!r}; its categories: "
        + ", ".join(f"{n} ({c})" for n, c in zip(spec.category_names, spec.categories))
    )


def _detection_cams(args: argparse.Namespace) -> int:
    """`cam --detection`: each detector's CAM of its detection of the asked object, side by side."""
    from fishspine.analysis.attribution.detection_cam import detector_pass
    from fishspine.analysis.figures.attribution import cam_export
    from fishspine.models.detector import pyramid_names

    detectors = _detectors_from(args)
    for label, ckpt in detectors.items():
        layers = [b.name for b in ckpt.model.blocks] + pyramid_names()
        if args.block and args.block not in layers:
            raise UserError(
                f"{label} has no block {args.block!r}; its layers are its blocks (`fishspine inspect`) "
                f"and {', '.join(pyramid_names())}"
            )
    labels = {name: _category_label(c.detector_spec, args.category, name) for name, c in detectors.items()}
    box = None if args.detection in (None, "top") else args.detection
    for path, pixels in _load_images(args.images):
        cams, missing = {}, []
        for name, ckpt in detectors.items():
            p = detector_pass(ckpt.detector, ckpt.detector_spec, pixels, box, labels[name])
            if p.target is None:
                missing.append(name)
                continue
            cams[name] = p.cam(args.block or p.default_layer(ckpt.model.blocks), args.method, name, args.scaling)
        for name in missing:
            print(f"{path.name}: {name} makes no detection of that object (same class, IoU >= 0.5)", file=sys.stderr)
        if cams:
            families = {name: c.family for name, c in detectors.items()}
            export = cam_export(path.stem, pixels, cams, args.alpha, args.cmap, box, families)
            _write_outputs(export, args.output / f"{path.stem}_{args.method}_detection", args.formats)
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
        cams = {label: c.rescaled(args.scaling) for label, c in cams.items()}
        _write_outputs(
            cam_export(
                path.stem,
                resize_longer_side(pixels, args.size),
                cams,
                args.alpha,
                args.cmap,
                families=_families(models),
            ),
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
    _write_outputs(
        gradients_export(stems, args.size, traces, args.which, _families(models)),
        args.output / "gradient_trace",
        args.formats,
    )
    return 0


def _add_activations(sub) -> None:
    from fishspine.analysis.options import CAM_CMAPS, CAM_METHODS, INPUT_METHODS, NORMALISATIONS, REDUCTIONS, SCALINGS

    scaling_help = (
        "the range shown as the colour scale: each map's 1st-99th percentile (one hot pixel does not black out "
        "the rest) or its min-max"
    )

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
    p.add_argument("--scaling", choices=SCALINGS, default=SCALINGS[0], help=scaling_help)
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
    p.add_argument(
        "--detection",
        type=detection_box,
        metavar="top|X,Y,W,H",
        help="CAM of a detection of whole detectors (--ckpt from `fishspine train`): each detector's detection "
        "of the object in this box (same class, IoU >= 0.5, best score), or its top detection; --block may "
        "then also name a pyramid level, 'FPN P3' .. 'FPN P7' (default: the level each detection came from)",
    )
    p.add_argument("--category", help="with --detection: the object's category, by name or dataset id")
    p.add_argument("--alpha", type=bounded_float(0.0, 1.0), default=0.5, help="overlay opacity, 0..1")
    p.add_argument(
        "--scaling",
        choices=SCALINGS,
        default=SCALINGS[0],
        help="each CAM from 0 to its 99th percentile (one hot pixel does not black out the rest) or to its maximum",
    )
    p.add_argument("--cmap", choices=CAM_CMAPS, default=CAM_CMAPS[0], help="the CAM's colour map")
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
        fpn_channels=args.fpn_channels,
        flip=not args.no_flip,
        until_epoch=args.until_epoch,
        eval_images=args.eval_images,
        warmup_steps=args.warmup_steps,
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
    print(f"detector checkpoint (backbone, pyramid and head): {summary['checkpoint']}")
    if summary["detections"] is None:
        print(f"stopped after epoch {summary['epochs']} of {cfg.epochs}; --resume continues")
    else:
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
        "--until-epoch",
        type=bounded_int(0, 100_000),
        default=0,
        help="stop after this epoch (the schedule stays that of --epochs); --resume continues (0: all epochs)",
    )
    p.add_argument(
        "--eval-images",
        type=bounded_int(0, 1_000_000),
        default=0,
        help="after each epoch, write the AP on this many validation images to OUT/metrics.jsonl (default 0: off)",
    )
    p.add_argument(
        "--fpn-channels",
        type=multiple_of(32, 32, 2048),
        default=128,
        help="feature pyramid width, a multiple of 32 (default 128)",
    )
    p.add_argument("--warmup-steps", type=bounded_int(0, 1_000_000), default=50, help="linear warm-up (default 50)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips of the training images")
    p.add_argument(
        "--train-split",
        default="train",
        help="split name: annotations/instances_SPLIT.json, SPLIT/ (COCO itself: train2017)",
    )
    p.add_argument("--val-split", default="val", help="likewise for validation (COCO: val2017)")
    _add_device(p)
    p.set_defaults(func=cmd_train)


# ------------------------------------------------------------------------------------------- main


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
