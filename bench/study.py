"""Throughput and memory of `fishspine study`.

1. Images/s of each demo backbone (all metrics), as the command runs it: one process with one
   thread, one process with every core, and two processes under torchrun with one thread each; the
   scaling efficiency is (2-process rate) / (2 x 1-thread rate). The rate is the study's images over
   its own seconds (summary.json), so start-up and model loading are left out.
2. Peak resident memory of one process over a long study, read when 100 and when all images are done.

Run: .venv/bin/python -m fishspine.bench.study [--images 48] [--memory-images 1000] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _write_images(folder: Path, n: int) -> Path:
    from PIL import Image

    from fishspine.analysis.images import sample_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(sample_image(256, seed=i)).save(folder / f"img{i:05d}.png")
    return folder


def _rate(out: Path) -> float:
    summary = json.loads((out / "summary.json").read_text())
    return summary["config"]["images"] / summary["config"]["seconds"]


def _study(args: list[str], out: Path, processes: int, threads: int | None) -> float:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    if processes == 1:
        cmd = [str(Path(sys.executable).with_name("fishspine")), "study"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            "-m",
            "fishspine.cli.main",
            "study",
        ]
    subprocess.run([*cmd, *args, "-o", str(out), "--formats", "png"], check=True, env=env, capture_output=True)
    return _rate(out)


def throughput(
    checkpoints: dict[str, Path], images: Path, size: int, batch: int, work: Path, device: str = "cpu"
) -> list[dict]:
    """Images/s of each backbone on 1 process x 1 thread, 1 process x all cores, 2 processes x 1 thread
    (on a GPU, `device` cuda: each process takes one)."""
    rows = []
    for label, path in checkpoints.items():
        args = [
            "--ckpt",
            f"{label}={path}",
            str(images),
            "--size",
            str(size),
            "--batch",
            str(batch),
            "--device",
            device,
        ]
        one = _study(args, work / f"{label}-1x1", 1, 1)
        cores = _study(args, work / f"{label}-1xall", 1, None)
        two = _study(args, work / f"{label}-2x1", 2, 1)
        rows.append({"model": label, "1x1": one, "1xall": cores, "2x1": two, "efficiency": two / (2 * one)})
        print(f"{label}: {one:.2f} img/s (1 process, 1 thread), {cores:.2f} (1 process, {os.cpu_count()} threads), "
              f"{two:.2f} (2 processes) -> scaling efficiency {two / (2 * one):.0%}", flush=True)  # fmt: skip
    return rows


def memory(checkpoint: Path, images: Path, size: int, batch: int, work: Path, early: int = 100) -> dict:
    """Peak RSS of this process after `early` images and after all of them (one backbone, every metric)."""
    from fishspine.analysis.jobs import run_job
    from fishspine.analysis.study.dataset import image_folder
    from fishspine.analysis.study.runner import StudyConfig, study_job
    from fishspine.models.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint).model
    paths = image_folder(images)
    marks: dict[str, float] = {}

    def seen(p) -> None:
        if p.done >= early and "early" not in marks:
            marks["early"] = _peak_rss_mb()

    run_job(study_job({"m": model}, paths, work / "memory", StudyConfig(size=size, batch=batch)), seen)
    marks["all"] = _peak_rss_mb()
    print(f"peak RSS: {marks['early']:.0f} MiB after {early} images, {marks['all']:.0f} MiB after {len(paths)}")
    return {"images": len(paths), f"peak_rss_mb_at_{early}": marks["early"], "peak_rss_mb_at_all": marks["all"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48, help="images per throughput run")
    parser.add_argument("--memory-images", type=int, default=1000, help="images of the memory run (0: skip it)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--memory-size", type=int, default=96, help="input side of the memory run (its length)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (each process of the 2-process run takes a GPU)")
    parser.add_argument("-o", "--output", type=Path, help="also write the numbers here (.json)")
    args = parser.parse_args()

    from fishspine.app.components.sources import demo_sources

    checkpoints = {Path(p).stem: Path(p) for p in demo_sources()["models"]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = _write_images(work / "images", max(args.images, args.memory_images))
        few = work / "few"
        few.mkdir()
        for p in sorted(images.iterdir())[: args.images]:
            (few / p.name).symlink_to(p)
        result = {"size": args.size, "batch": args.batch, "cpus": os.cpu_count(), "device": args.device}
        result["throughput"] = throughput(checkpoints, few, args.size, args.batch, work, args.device)
        if args.memory_images:
            result["memory"] = memory(next(iter(checkpoints.values())), images, args.memory_size, args.batch, work)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
