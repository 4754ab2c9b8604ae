"""The trainer end to end on a tiny generated dataset on the CPU."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from fishspine.analysis.jobs import run_job
from fishspine.models.checkpoints import load_checkpoint
from fishspine.training.synth import SynthConfig, synthesize
from fishspine.training.train import CocoDetectionData, TrainConfig, iter_train, load_detector, predict


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


def coco_stats(gt_file: str | Path, dets: list[dict]):
    """pycocotools' bbox evaluation of `dets` against `gt_file` (its printout silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return gt, ev


def test_result_json_is_a_coco_result_for_the_val_images(run):
    cfg, summary = run
    dets = json.loads(Path(summary["detections"]).read_text())
    gt, ev = coco_stats(f"{cfg.data}/annotations/instances_val.json", dets)
    images = {im["id"]: im for im in gt.dataset["images"]}
    assert {d["image_id"] for d in dets} == set(images)  # every val image, no other
    assert {d["category_id"] for d in dets} <= set(gt.getCatIds())
    for d in dets:  # [x, y, width, height] in the image's own pixels
        x, y, w, h = d["bbox"]
        im = images[d["image_id"]]
        assert w > 0 and h > 0 and x >= -0.01 and y >= -0.01
        assert x + w <= im["width"] + 0.01 and y + h <= im["height"] + 0.01
    assert sorted(ev.params.imgIds) == sorted(images) and ev.stats[0] >= 0  # -1: nothing was matched against


class FindsEveryObject:
    """A detector that answers each image with its own ground truth (at the size it was fed)."""

    def __init__(self, data: CocoDetectionData) -> None:
        self.targets = [data.load(i)[1] for i in range(len(data))]
        self.seen = 0

    def eval(self) -> FindsEveryObject:
        return self

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for target in self.targets[self.seen : self.seen + len(images)]:
            n = len(target["labels"])
            out.append({"boxes": target["boxes"], "labels": target["labels"], "scores": torch.linspace(1.0, 0.5, n)})
        self.seen += len(images)
        return out


def test_predict_writes_ids_categories_and_boxes_that_pycocotools_scores_perfect(tmp_path):
    """Image ids, category ids (non-contiguous) and boxes mapped back from the fed size to the file's:
    a detector that finds every object must score AP 1."""
    synthesize(tmp_path, SynthConfig(train=2, val=5, image_size=96, seed=3))
    ann = tmp_path / "annotations" / "instances_val.json"
    gt = json.loads(ann.read_text())
    for im in gt["images"]:
        im["id"] += 40
    for c in gt["categories"]:
        c["id"] = 3 * c["id"] + 7
    for a in gt["annotations"]:
        a["image_id"] += 40
        a["category_id"] = 3 * a["category_id"] + 7
    ann.write_text(json.dumps(gt))
    val = CocoDetectionData(tmp_path, "val", 64)  # fed at 64 px, files are 96 px
    dets = predict(FindsEveryObject(val), val, torch.device("cpu"), batch=2)
    assert len(dets) == len(gt["annotations"])
    _gt, ev = coco_stats(ann, dets)
    assert ev.stats[0] == pytest.approx(1.0)  # AP over IoU 0.50:0.95


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
    cfg = TrainConfig(
        "scnet50",
        str(root),
        str(tmp_path / "run"),
        epochs=1,
        batch=2,
        image_size=96,
        train_split="train2017",
        val_split="val2017",
    )
    summary = run_job(iter_train(cfg))
    dets = json.loads(Path(summary["detections"]).read_text())
    assert dets and all(d["category_id"] > 100 for d in dets)


def test_a_run_stopped_and_resumed_trains_exactly_as_one_that_was_not(run, tmp_path):
    """--until-epoch then --resume: the same weights as an uninterrupted run (learning rate, image order
    and flips are functions of the step and the epoch), a metrics line per epoch, and the whole
    detector saved each epoch opens with load_checkpoint."""
    cfg, _ = run
    common = dict(epochs=2, batch=4, image_size=96, lr=2e-3, fpn_channels=64, warmup_steps=2, eval_images=2)
    straight = TrainConfig(cfg.backbone, cfg.data, str(tmp_path / "a"), **common)
    run_job(iter_train(straight))
    first = run_job(iter_train(TrainConfig(cfg.backbone, cfg.data, str(tmp_path / "b"), until_epoch=1, **common)))
    assert first["detections"] is None and first["epochs"] == 1 and first["steps"] == 3
    second = run_job(iter_train(TrainConfig(cfg.backbone, cfg.data, str(tmp_path / "b"), resume=True, **common)))
    assert second["steps"] == 6 and second["detections"] is not None
    a = load_checkpoint(tmp_path / "a" / "detector_epoch2.safetensors")
    b = load_checkpoint(tmp_path / "b" / "detector_epoch2.safetensors")
    assert a.detector is not None and a.detector_spec.category_names[0] == "circle"
    for (k, va), vb in zip(a.detector.state_dict().items(), b.detector.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and all(0 <= x["AP"] <= 1 and x["val_images"] == 2 for x in lines)
    assert lines[1]["lr"] < lines[0]["lr"]  # cosine decay, not restarted by the resume
