"""The `fishspine` command: every figure the app shows, headless.

Each subcommand is a small function registered in `COMMANDS`; heavy imports happen inside them so
`fishspine --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

EXAMPLES = """\
examples:
  fishspine models                              list the backbones in the zoo
  fishspine inspect fishnet150_ckpt.tar         what a checkpoint is: family, variant, params, blocks
  fishspine bench models --device cuda          forward throughput against torchvision ResNet-50
"""


class UserError(Exception):
    """A problem with the user's input: printed as one clear message, exit status 2."""


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="where to compute: auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...")


# ------------------------------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    """List the zoo: variant, family, parameters, output levels."""
    import torch

    from fishspine.models import create_model, list_models, model_family

    print(f"{'model':<18} {'family':<9} {'params':>13}  blocks  outputs (level: channels)")
    for name in list_models(args.family):
        with torch.device("meta"):
            m = create_model(name)
        n = sum(p.numel() for p in m.parameters())
        levels = ", ".join(f"P{k}:{c}" for k, c in sorted(m.feature_levels.items()))
        print(f"{name:<18} {model_family(name):<9} {n:>13,}  {len(m.blocks):>6}  {levels}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the backbones in the zoo", description=cmd_models.__doc__)
    p.add_argument("--family", choices=["fishnet", "scnet", "spinenet", "resnet"], help="only this family")
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
    levels = ", ".join(f"P{k}: {c} ch (stride {2 ** k})" for k, c in sorted(model.feature_levels.items()))
    print(f"outputs:   {levels}")
    print(f"blocks:    {len(model.blocks)}")
    if not args.quiet:
        print(f"  {'#':>3}  {'name':<26} {'role':<9} {'level':>5} {'stride':>6} {'channels':>8}  parents")
        for i, b in enumerate(model.blocks):
            print(f"  {i:>3}  {b.name:<26} {b.role:<9} {b.level:>5} {2 ** b.level:>6} {b.channels:>8}  "
                  f"{', '.join(b.parents)}")
    return 0


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="recognise a checkpoint and print its architecture",
                       description=cmd_inspect.__doc__)
    p.add_argument("checkpoint", type=Path, help="a .tar/.pth/.pt/.safetensors file")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the blocks")
    p.set_defaults(func=cmd_inspect)


# ------------------------------------------------------------------------------------------- bench


def cmd_bench_models(args: argparse.Namespace) -> int:
    """Forward throughput of zoo models next to torchvision ResNet-50, measured in one run."""
    import torch

    from . import benchmark

    device = _device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    results = []
    plan = benchmark.bench_plan(args.models)
    total = len(plan) * len(args.modes)
    for i, r in enumerate(benchmark.run_benchmark(args.models, tuple(args.modes), device, args.batch,
                                                  args.warmup, args.repeats), 1):
        results.append(r)
        print(f"[{i}/{total}] {r.model} @{r.size} {r.mode}: {r.images_per_s:.1f} img/s, "
              f"{r.tflops:.2f} TFLOP/s", file=sys.stderr, flush=True)
    table = benchmark.format_table(results, name)
    print(table)
    if args.output:
        from .figures import write_json

        Path(args.output).with_suffix(".md").write_text(table + "\n")
        write_json(Path(args.output).with_suffix(".json"), [r.__dict__ | {"tflops": r.tflops} for r in results])
    return 0


def _add_bench(sub) -> None:
    from .benchmark import MODES

    p = sub.add_parser("bench", help="benchmarks")
    bsub = p.add_subparsers(dest="bench_what", required=True, metavar="WHAT")
    m = bsub.add_parser("models", help="forward throughput of the zoo vs ResNet-50",
                        description=cmd_bench_models.__doc__)
    m.add_argument("models", nargs="*", help="zoo models (default: all)")
    m.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    m.add_argument("--batch", type=int, default=64)
    m.add_argument("--warmup", type=int, default=3)
    m.add_argument("--repeats", type=int, default=10)
    m.add_argument("-o", "--output", help="also write the table (.md) and raw numbers (.json) here")
    _add_device(m)
    m.set_defaults(func=cmd_bench_models)


# ------------------------------------------------------------------------------------------- main


def _device(name: str):
    from .device import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc


SUBCOMMANDS: list[Callable] = [_add_models, _add_inspect, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="fishspine",
        description="See inside multi-scale CNN backbones (FishNet, SCNet, SpineNet) against ResNets: "
                    "architecture diagrams, activations, Grad-CAM, gradient traces and COCO per-scale AP, "
                    "as publication-quality figures (PNG, SVG, PDF) and data (CSV, JSON).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    sys.exit(main())
