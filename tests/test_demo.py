"""The shipped demo: its files are what the README says, and `fishspine coco` reproduces the README table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fishspine.app.components.sources import DEMO_DIR, demo_sources
from fishspine.models.checkpoints import load_checkpoint

from .conftest import REPO

BACKBONES = ("ResNet-50", "FishNet-150", "SCNet-50", "SpineNet-49")


def test_readme_table_is_what_fishspine_coco_prints_from_the_shipped_files(tmp_path):
    coco = DEMO_DIR / "coco"
    dts = [a for b in BACKBONES for a in ("--dt", f"{b}={coco / f'{b}.json'}")]
    fishspine = str(Path(sys.executable).with_name("fishspine"))
    res = subprocess.run(
        [
            fishspine,
            "coco",
            "--gt",
            str(coco / "instances_val.json"),
            *dts,
            "--baseline",
            "ResNet-50",
            "-o",
            str(tmp_path),
            "--formats",
            "svg",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## The demo's per-scale AP.*?```text\n(.*?)```", readme, re.S).group(1).strip()
    assert res.stdout.strip() == block


def test_demo_checkpoints_are_trained_fishspine_files_within_the_size_budget():
    demo = demo_sources()
    assert len(demo["models"]) == 4 and demo["coco_gt"] and set(demo["coco_results"]) == set(BACKBONES)
    families = set()
    for path in demo["models"]:
        ckpt = load_checkpoint(path)
        assert ckpt.format == "fishspine" and ckpt.meta["width"] == 0.25 and "FCOS" in ckpt.meta["trained_on"]
        assert ckpt.detector is not None and len(ckpt.detector_spec.category_names) == 8  # whole detectors
        families.add(ckpt.family)
    assert families == {"resnet", "fishnet", "scnet", "spinenet"}
    total = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert total < 60 * 2**20  # the asset budget
    assert len(demo["images"]) == 6


def test_the_demo_validation_split_is_shipped_whole_for_the_evidence():
    """At least 500 validation images, each file the ground truth names present (the evidence's crops
    and the detection CAMs read them), and the app's demo points the COCO evidence at them."""
    import json

    demo = demo_sources()
    gt = json.loads(Path(demo["coco_gt"]).read_text())
    assert len(gt["images"]) >= 500 and demo["coco_images"]
    assert all((Path(demo["coco_images"]) / im["file_name"]).is_file() for im in gt["images"])
