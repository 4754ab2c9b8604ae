"""The trainer end to end on a tiny generated dataset on the CPU."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from fishspine.training.synth import SynthConfig, synthesize
from fishspine.analysis.jobs import run_job
from fishspine.training.train import CocoDetectionData, TrainConfig, iter_train, load_detector, predict
from fishspine.models.checkpoints import load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    synthesize(data, SynthConfig(train=12, val=3, image_size=96, seed=5))
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig("resnet50", str(data), str(out), epochs=3, batch=4, image_size=96, lr=2e-3)
    summary = run_job(iter_train(cfg))
    return cfg, summary


def test_loss_decreases(run):
    _, summary = run
    losses = summary["losses"]
    assert len(losses) == 9
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_checkpoints_reload(run):
    cfg, summary = run
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt.variant == "resnet50" and ckpt.meta["width"] == 0.25 and "FCOS" in ckpt.meta["trained_on"]
    detector, categories = load_detector(cfg.out)
    body = detector.backbone.body.state_dict()
    for k, v in ckpt.model.state_dict().items():
        torch.testing.assert_close(v, body[k])
    val = CocoDetectionData(cfg.data, "val", cfg.image_size, categories)
    again = predict(detector, val, torch.device("cpu"))
    assert again == json.loads(Path(summary["detections"]).read_text())


def test_result_json_is_accepted_by_pycocotools(run):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cfg, summary = run
    dets = json.loads(Path(summary["detections"]).read_text())
    assert dets and {"image_id", "category_id", "bbox", "score"} <= set(dets[0])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(f"{cfg.data}/annotations/instances_val.json")
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert -1 <= ev.stats[0] <= 1


def test_resume_continues_from_the_last_epoch(run, tmp_path):
    cfg, _ = run
    short = TrainConfig(cfg.backbone, cfg.data, str(tmp_path), epochs=2, batch=4, image_size=96, max_steps=3)
    first = run_job(iter_train(short))
    assert first["steps"] == 3
    resumed = TrainConfig(cfg.backbone, cfg.data, str(tmp_path), epochs=2, batch=4, image_size=96, resume=True)
    second = run_job(iter_train(resumed))
    assert second["steps"] == 6  # epoch 2 only: 3 steps per epoch


def test_missing_annotations_say_what_a_dataset_folder_holds(tmp_path):
    with pytest.raises(ValueError, match="annotations/instances_train.json"):
        CocoDetectionData(tmp_path, "train", 96)


def test_any_coco_layout_split_names_and_images_without_objects(tmp_path):
    """COCO's own naming (instances_train2017.json, train2017/) and an image with no annotations."""
    import shutil

    src = tmp_path / "src"
    synthesize(src, SynthConfig(train=4, val=2, image_size=96, seed=9))
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split, new in (("train", "train2017"), ("val", "val2017")):
        shutil.copytree(src / split, root / new)
        gt = json.loads((src / "annotations" / f"instances_{split}.json").read_text())
        if split == "train":
            gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 1]  # image 1: no objects
            for c in gt["categories"]:
                c["id"] += 100  # non-contiguous category ids
            for a in gt["annotations"]:
                a["category_id"] += 100
        else:
            for c in gt["categories"]:
                c["id"] += 100
            for a in gt["annotations"]:
                a["category_id"] += 100
        (root / "annotations" / f"instances_{new}.json").write_text(json.dumps(gt))
    cfg = TrainConfig("scnet50", str(root), str(tmp_path / "run"), epochs=1, batch=2, image_size=96,
                      train_split="train2017", val_split="val2017")
    summary = run_job(iter_train(cfg))
    dets = json.loads(Path(summary["detections"]).read_text())
    assert dets and all(d["category_id"] > 100 for d in dets)
