"""`fishspine coco`: per-scale AP of several result files with deltas and their intervals, the error breakdown,
and the objects behind each difference."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from fishspine.cli.arguments import (
    Increasing,
    bounded_float,
    bounded_int,
    input_file,
    input_folder,
    labelled,
    output_folder,
)
from fishspine.cli.common import UserError, _progress, _run, available_cpus


def cmd_coco(args: argparse.Namespace) -> int:
    """COCO per-scale AP of several backbones' result files, with deltas against a baseline."""
    from fishspine.analysis.coco.evaluation import CocoError, format_table, iter_evaluate, per_scale_table

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
                iter_evaluate(
                    args.gt, results, iou_type, ranges, tuple(args.max_dets), boot, args.seed, args.processes
                ),
                bar,
                per_step=True,
            )
        except CocoError as exc:
            raise UserError(str(exc)) from exc
        text = format_table(evals, args.baseline, bootstrap=boot, seed=args.seed)
        print(text)
        print(flush=True)  # the table is out before matplotlib is even imported
        from fishspine.analysis.coco.tables import latex_table, markdown_table
        from fishspine.analysis.figures.base import write_csv, write_json
        from fishspine.analysis.figures.coco import per_class_figure, pr_curves_figure, size_bars_figure, table_figure
        from fishspine.models.atomic_files import atomic_write_bytes

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
        figures = {
            "table": partial(table_figure, evals, args.baseline, boot, args.seed),
            "sizes": partial(size_bars_figure, evals, args.baseline, boot, args.seed),
            "pr": partial(pr_curves_figure, evals, 0.5),
        }
        for name, ev in evals.items():
            figures[f"classes_{_file_safe(name)}"] = partial(per_class_figure, ev)
        written += _save_side_by_side(
            [(make, out / f"coco_{iou_type}_{kind}", args.formats) for kind, make in figures.items()], args.processes
        )
        for w in written:
            print(w, file=sys.stderr)
    bar.close()
    if args.errors or args.evidence:
        gt, dets = _boxes(args.gt, results)  # read once for both
        if args.errors:
            _coco_errors(args, gt, dets, ranges, out)
        if args.evidence:
            _coco_evidence(args, gt, dets, ranges)
    return 0


def _save_side_by_side(figures: list[tuple], processes: int) -> list[Path]:
    """save_figures(*f) for each f of `figures`, dealt round to `processes` forked processes where that is
    safe (analysis/parallel.py); the paths written, in `figures`' order."""
    from fishspine.analysis.figures.base import save_figures
    from fishspine.analysis.parallel import fork_is_safe, side_by_side

    def save_share(share: list[tuple[int, tuple]]) -> list[tuple[int, list[Path]]]:
        return [(i, save_figures(*f)) for i, f in share]

    n = max(min(processes, len(figures)), 1) if fork_is_safe() else 1
    numbered = list(enumerate(figures))
    done = sorted(pair for paths in side_by_side(save_share, [(numbered[i::n],) for i in range(n)]) for pair in paths)
    return [path for _, paths in done for path in paths]


def _file_safe(name: str) -> str:
    """A backbone's name as part of a file name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _boxes(gt_path: str, results: dict) -> tuple[dict, dict[str, list[dict]]]:
    """The checked ground truth and each result file's checked box detections."""
    from fishspine.analysis.coco.evaluation import CocoError, load_ground_truth, load_results

    try:
        gt = load_ground_truth(gt_path)
        return gt, {name: load_results(path, gt, "bbox", name) for name, path in results.items()}
    except CocoError as exc:
        raise UserError(str(exc)) from exc


def _coco_evidence(args: argparse.Namespace, gt: dict, dets: dict, ranges: dict | None) -> None:
    """`coco --evidence DIR`: per backbone and size range, the objects behind its difference to the baseline."""
    from fishspine.analysis.coco.evaluation import DEFAULT_AREA_RANGES
    from fishspine.analysis.coco.evidence import evidence, image_loader
    from fishspine.analysis.figures.base import model_colors
    from fishspine.analysis.figures.coco_evidence import evidence_export

    files = {e["id"]: e.get("file_name") for e in gt["images"]}
    categories = {c["id"]: c["name"] for c in gt["categories"]}

    image = image_loader(args.images, files)
    names = list(dets)
    colours = model_colors(names)  # each backbone's colour in every figure and in the app, whatever the order
    for name in names:
        if name == args.baseline:
            continue
        for area in ranges or DEFAULT_AREA_RANGES:
            ev = evidence(gt, (name, dets[name]), (args.baseline, dets[args.baseline]), area, ranges)
            colors = (colours[name], colours[args.baseline])
            counts = ", ".join(f"{k} {v}" for k, v in ev.counts().items())
            print(f"{name} vs {args.baseline}, {area}: {counts}")
            export = evidence_export(ev, image, categories, colors)
            for w in export.write(Path(args.evidence) / f"{_file_safe(name)}_{area}", args.formats):
                print(w, file=sys.stderr)


def _coco_errors(args: argparse.Namespace, gt: dict, dets: dict, ranges: dict | None, out: Path) -> None:
    """`coco --errors`: TIDE's error breakdown of each result file's boxes, per size range."""
    from fishspine.analysis.coco.errors import error_breakdown
    from fishspine.analysis.figures.coco_errors import errors_export, format_errors

    breakdowns = {name: error_breakdown(gt, d, name, ranges, args.max_dets[-1]) for name, d in dets.items()}
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
    p.add_argument("--images", type=input_folder, metavar="DIR", help="the images of --gt (for --evidence crops)")
    p.add_argument(
        "--bootstrap",
        type=bounded_int(0, 100_000),
        default=1000,
        metavar="N",
        help="resamples of the images for the 95%% paired bootstrap interval of each delta (default 1000; 0: none)",
    )
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument(
        "--processes",
        type=bounded_int(1, 256),
        default=min(available_cpus(), 8),
        metavar="N",
        help="evaluate a large result file's categories, and write the figures, in N processes side by side "
        "(the same numbers and files; default: the CPUs this process may use, at most 8)",
    )
    p.add_argument("-o", "--output", required=True, type=output_folder, help="output folder")
    p.add_argument("--formats", nargs="+", default=["png", "svg", "pdf"], choices=["png", "svg", "pdf"])
    p.set_defaults(func=cmd_coco)
