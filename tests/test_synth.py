"""The generated demo dataset: deterministic, COCO-loadable, all three size ranges, honest masks."""

from __future__ import annotations

import json

import numpy as np

from fishspine.training.synth import CATEGORIES, SynthConfig, synthesize


def test_dataset_is_deterministic_and_pycocotools_loads_it(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    cfg = SynthConfig(train=6, val=3, image_size=160, seed=3)
    a = synthesize(tmp_path / "a", cfg)
    synthesize(tmp_path / "b", cfg)
    for split in ("train", "val"):
        ja = (tmp_path / "a" / "annotations" / f"instances_{split}.json").read_bytes()
        jb = (tmp_path / "b" / "annotations" / f"instances_{split}.json").read_bytes()
        assert ja == jb
        assert (tmp_path / "a" / split / f"{split}_000000.png").read_bytes() == (
            tmp_path / "b" / split / f"{split}_000000.png"
        ).read_bytes()
    coco = COCO(str(tmp_path / "a" / "annotations" / "instances_train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
    assert a["splits"]["train"]["objects"] == len(coco.getAnnIds()) > 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = mask_utils.decode(ann["segmentation"])
        assert m.sum() == ann["area"]  # area is the visible mask's
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    other = synthesize(tmp_path / "c", SynthConfig(train=6, val=3, image_size=160, seed=4))
    assert (
        other["splits"]["train"]["objects"] != a["splits"]["train"]["objects"]
        or (tmp_path / "c" / "train" / "train_000000.png").read_bytes()
        != (tmp_path / "a" / "train" / "train_000000.png").read_bytes()
    )


def test_sizes_cover_the_three_coco_ranges_in_about_coco_proportions(tmp_path):
    summary = synthesize(tmp_path, SynthConfig(train=60, val=0, image_size=320, seed=0))["splits"]["train"]
    assert summary["objects"] > 200
    assert 0.3 < summary["small"] < 0.55 and 0.22 < summary["medium"] < 0.45 and 0.12 < summary["large"] < 0.35
    gt = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    assert {a["iscrowd"] for a in gt["annotations"]} == {0}
