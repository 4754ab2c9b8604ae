"""Collect the trained demo into assets/demo (the collect stage of scripts/make_demo.sh).

Usage: python scripts/collect_demo.py WORK_DIR EPOCH [DEVICE]

- checkpoints/<Backbone>.safetensors: each whole detector of epoch EPOCH (backbone, pyramid, head);
- val/: the generated validation split as JPEG (quality 90: 500 PNGs of noise would not fit the asset
  budget), and coco/instances_val.json, its ground truth naming those files;
- coco/<Backbone>.json: each detector's detections on exactly those JPEG files, so what the app shows
  (evidence crops, detection CAMs) is what was evaluated;
- images/: three validation images beside the photographs already there.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from PIL import Image

from fishspine.models.checkpoints import load_checkpoint
from fishspine.training.train import CocoDetectionData, predict

LABEL = {"resnet50": "ResNet-50", "fishnet150": "FishNet-150", "scnet50": "SCNet-50", "spinenet49": "SpineNet-49"}
DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"


def main(work: Path, epoch: int, device: str = "cpu") -> None:
    gt = json.loads((work / "data" / "annotations" / "instances_val.json").read_text())
    staged = work / "demo_val"  # the JPEG split as a dataset folder, for `predict`
    (staged / "val").mkdir(parents=True, exist_ok=True)
    (staged / "annotations").mkdir(exist_ok=True)
    for im in gt["images"]:
        name = Path(im["file_name"]).with_suffix(".jpg").name
        Image.open(work / "data" / "val" / im["file_name"]).convert("RGB").save(staged / "val" / name, quality=90)
        im["file_name"] = name
    (staged / "annotations" / "instances_val.json").write_text(json.dumps(gt))

    for sub in ("checkpoints", "coco", "val"):
        shutil.rmtree(DEMO / sub, ignore_errors=True)
        (DEMO / sub).mkdir(parents=True)
    shutil.copytree(staged / "val", DEMO / "val", dirs_exist_ok=True)
    shutil.copy(staged / "annotations" / "instances_val.json", DEMO / "coco" / "instances_val.json")
    for backbone, label in LABEL.items():
        src = work / "runs" / backbone / f"detector_epoch{epoch}.safetensors"
        shutil.copy(src, DEMO / "checkpoints" / f"{label}.safetensors")
        ckpt = load_checkpoint(src, device)
        data = CocoDetectionData(staged, "val", ckpt.detector_spec.image_size, ckpt.detector_spec.categories)
        with torch.no_grad():
            dets = predict(ckpt.detector, data, torch.device(device))
        for d in dets:  # rounded to a tenth of a pixel and 4 digits of score, for the asset budget
            d["bbox"] = [round(v, 1) for v in d["bbox"]]
            d["score"] = round(d["score"], 4)
        (DEMO / "coco" / f"{label}.json").write_text(json.dumps(dets, separators=(",", ":")))
        print(f"{label}: {len(dets)} detections on {len(data)} images", flush=True)
    for old in (DEMO / "images").glob("shapes_*"):
        old.unlink()
    for i in range(3):
        shutil.copy(staged / "val" / f"val_{i:06d}.jpg", DEMO / "images" / f"shapes_{i:06d}.jpg")
    for path in DEMO.rglob("*"):
        if path.is_file():
            path.chmod(0o644)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), *(sys.argv[3:4]))
